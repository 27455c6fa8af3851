"""The pure training and evaluation steps.

Both take and return pytrees only, so they compile with
`jax.jit(train_step, donate_argnums=0)` (data-parallel when the batch is sharded
over a mesh) or run under `jax.pmap(functools.partial(train_step,
axis_name="batch"), axis_name="batch")` with the same results.

Example:
  from jaxlearn import create_train_state, train_step
  state = create_train_state(LeNet5(rngs=nnx.Rngs(0)), optax.adam(1e-3), jax.random.key(0))
  step = jax.jit(train_step, donate_argnums=0)
  state, metrics = step(state, {"inputs": images, "targets": labels})
  print(metrics.compute())  # {"loss": ..., "accuracy": ..., "grad_norm": ..., ...}
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxlearn import losses, optim
from jaxlearn.state import TrainState
from jaxlearn.tasks import CLASSIFICATION, Task


def train_step(state: TrainState, batch: dict, *, task: Task = CLASSIFICATION,
               axis_name: str | None = None, skip_nonfinite: bool = False,
               augment: Callable | None = None, param_norm: bool = True):
  """One optimizer step on `batch` ({"inputs", "targets"}, optional per-example "weights").

  Returns (new state, metrics). With `skip_nonfinite`, a step whose loss or
  gradient is NaN/Inf leaves everything but the step count unchanged.
  `augment(inputs, key)` transforms the inputs first, with a key of this step.
  `param_norm=False` reports 0 for the parameters' norm, a pass over all weights
  that `train_steps` makes once per chunk instead (about 5% of the MNIST MLP's step).
  """
  # A fresh key per step (for dropout) without carrying a split key in the state.
  step_rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    step_rng = jax.random.fold_in(step_rng, jax.lax.axis_index(axis_name))
  inputs = batch["inputs"]
  if augment is not None:
    inputs = augment(inputs, jax.random.fold_in(step_rng, 1))

  def loss_fn(params):
    outputs, model_state = state.apply_model(params, inputs, train=True, rng=step_rng)
    per_example = task.loss(outputs, batch["targets"])
    loss = losses.weighted_mean(per_example, batch.get("weights"))
    return loss, (per_example, outputs, model_state)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, (per_example, outputs, model_state)), grads = grad_fn(state.params)
  if axis_name is not None:  # Under pmap; with jit + sharding XLA adds this itself.
    grads = jax.lax.pmean(grads, axis_name)
    model_state = jax.lax.pmean(model_state, axis_name)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  if axis_name is not None:  # Every device skips, or none.
    finite = jax.lax.pmin(finite.astype(jnp.int32), axis_name).astype(bool)

  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(params=params, model_state=model_state, opt_state=opt_state,
                            ema_params=_updated_ema(state, params, opt_state))
  if skip_nonfinite:
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
  new_state = new_state.replace(step=state.step + 1)

  mask = jnp.broadcast_to(finite, per_example.shape) if skip_nonfinite else None
  metrics = _metrics(task.train_metrics, axis_name, loss=per_example, logits=outputs,
                     labels=batch["targets"], mask=mask,
                     learning_rate=_learning_rate(opt_state), grad_norm=grad_norm,
                     param_norm=optax.tree.norm(new_state.params) if param_norm else 0.0,
                     nonfinite=~finite)
  return new_state, metrics


def train_steps(state: TrainState, batch_at: Callable[[jax.Array], dict], count, *,
                max_count: int, **step_options):
  """`count` train steps on batch_at(0), batch_at(1), ... as one compiled loop.

  `count` (1 <= count <= `max_count`) may be traced, so one compiled program
  serves every chunk of an epoch. For a small model a dispatch from Python
  costs about as much as the step itself (the MNIST MLP on a 2-core CPU: 0.88
  ms per step dispatched one by one, 0.53 ms in a loop), so the training loop
  runs steps in chunks. `step_options` go to `train_step`.

  Returns (state, the steps' merged metrics, per-step arrays of length
  `max_count` whose first `count` entries hold each step's "loss",
  "grad_norm" and "nonfinite"). The merged "param_norm" is that of the chunk's
  final parameters.
  """

  def step(i, state):
    return train_step(state, batch_at(i), param_norm=False, **step_options)

  # Zeros merge as "no steps yet" for every metric the tasks use (sums, counts, last values).
  none_yet = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(step, 0, state)[1])
  per_step = {"loss": jnp.zeros(max_count), "grad_norm": jnp.zeros(max_count),
              "nonfinite": jnp.zeros(max_count, bool)}

  def body(i, carry):
    state, merged, per_step = carry
    state, metrics = step(i, state)
    values = {"loss": metrics.loss.compute(), "grad_norm": metrics.grad_norm.compute(),
              "nonfinite": metrics.nonfinite.total > 0}
    per_step = {k: v.at[i].set(values[k].astype(v.dtype)) for k, v in per_step.items()}
    return state, merged.merge(metrics), per_step

  state, merged, per_step = jax.lax.fori_loop(0, count, body, (state, none_yet, per_step))
  final_norm = type(merged.param_norm)(total=optax.tree.norm(state.params),
                                       count=jnp.ones((), jnp.int32))
  return state, merged.replace(param_norm=final_norm), per_step


def _updated_ema(state: TrainState, params, opt_state):
  """The weights' moving average, advanced only by steps that changed the weights."""
  if state.ema_params is None:
    return None
  decay = state.ema_decay
  moved = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state.ema_params, params)
  applied = optim.applied_update(opt_state)
  return jax.tree.map(lambda new, old: jnp.where(applied, new, old), moved, state.ema_params)


def eval_step(state: TrainState, batch: dict, *, task: Task = CLASSIFICATION,
              axis_name: str | None = None):
  """Metrics of the model in eval mode (EMA weights if kept); a `mask` marks padding with 0."""
  outputs, _ = state.apply_model(state.eval_params, batch["inputs"], train=False)
  return _metrics(task.eval_metrics, axis_name, loss=task.loss(outputs, batch["targets"]),
                  logits=outputs, labels=batch["targets"], mask=batch.get("mask"))


def _metrics(collection, axis_name, **model_output):
  if axis_name is None:
    return collection.single_from_model_output(**model_output)
  return collection.gather_from_model_output(axis_name=axis_name, **model_output)


def _learning_rate(opt_state):
  try:
    return optim.learning_rate(opt_state)
  except (AttributeError, KeyError, TypeError):  # An optimizer built without inject_hyperparams.
    return jax.numpy.nan
