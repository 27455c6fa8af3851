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

import jax
import optax

from jaxlearn import optim
from jaxlearn.state import TrainState
from jaxlearn.tasks import CLASSIFICATION, Task


def train_step(state: TrainState, batch: dict, *, task: Task = CLASSIFICATION,
               axis_name: str | None = None):
  """One optimizer step on `batch` ({"inputs", "targets"}); returns (new state, metrics)."""
  # A fresh key per step (for dropout) without carrying a split key in the state.
  step_rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    step_rng = jax.random.fold_in(step_rng, jax.lax.axis_index(axis_name))

  def loss_fn(params):
    outputs, model_state = state.apply_model(params, batch["inputs"], train=True, rng=step_rng)
    losses = task.loss(outputs, batch["targets"])
    return losses.mean(), (losses, outputs, model_state)

  grads, (losses, outputs, model_state) = jax.grad(loss_fn, has_aux=True)(state.params)
  if axis_name is not None:  # Under pmap; with jit + sharding XLA adds this itself.
    grads = jax.lax.pmean(grads, axis_name)
    model_state = jax.lax.pmean(model_state, axis_name)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, model_state=model_state,
                            opt_state=opt_state)
  metrics = _metrics(task.train_metrics, axis_name, loss=losses, logits=outputs,
                     labels=batch["targets"], learning_rate=_learning_rate(opt_state),
                     grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(params))
  return new_state, metrics


def eval_step(state: TrainState, batch: dict, *, task: Task = CLASSIFICATION,
              axis_name: str | None = None):
  """Metrics of the model in eval mode on `batch`; an optional `mask` marks padding with 0."""
  outputs, _ = state.apply_model(state.params, batch["inputs"], train=False)
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
