"""The pure training and evaluation steps.

Both take and return pytrees only, so they compile with
`jax.jit(train_step, donate_argnums=0)` (data-parallel when the batch is sharded
over a mesh) or run under `jax.pmap(functools.partial(train_step,
axis_name="batch"), axis_name="batch")` with the same results.

A batch is {"inputs", "targets"} with optional per-example "weights" (a 0/1
mask of padding, or any non-negative weights): the loss and every metric are
weighted means over the batch, in training and in evaluation alike.

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

from jaxlearn.core import finetune, losses, optim
from jaxlearn.core.state import TrainState
from jaxlearn.core.tasks import CLASSIFICATION, Task

# loss_fn(outputs, batch) -> one loss per example, shape [batch].
LossFn = Callable[[jax.Array, dict], jax.Array]


def train_step(state: TrainState, batch: dict, *, task: Task = CLASSIFICATION,
               loss_fn: LossFn | None = None, axis_name: str | None = None,
               skip_nonfinite: bool = False, augment: Callable | None = None,
               model_transform: Callable | None = None):
  """One optimizer step on `batch`; returns (new state, metrics).

  Args:
    state: the `TrainState`.
    batch: {"inputs", "targets"}, optionally "weights" (per example).
    task: picks the loss and the metrics (`jaxlearn.CLASSIFICATION`, `BINARY`,
      `REGRESSION`, or `make_task(config)`).
    loss_fn: `(outputs, batch) -> per-example losses` to minimise instead of the
      task's loss (which still names the metrics); it may read any batch key.
    axis_name: the mapped axis under `jax.pmap` (gradients are averaged over it).
    skip_nonfinite: a step whose loss or gradient is NaN/Inf leaves everything
      but the step count unchanged.
    augment: `augment(inputs, key)` transforms the inputs first, with a key of
      this step (see `jaxlearn.data.augment`).
    model_transform: a function transformation applied to the model's forward
      pass `(params, inputs, rng) -> (outputs, model_state)`, e.g.
      `jax.checkpoint`, or `jaxlearn.xla_cpu.with_cpu_kernels` on a CPU.

  Returns:
    (the new state, a clu metrics collection: `.compute()` gives the loss, the
    task's metrics, learning rate, gradient and parameter norms).

  >>> import jax, jax.numpy as jnp, optax
  >>> from flax import nnx
  >>> from jaxlearn import REGRESSION, create_train_state
  >>> from jaxlearn.models import LinearRegression
  >>> state = create_train_state(LinearRegression(in_features=2, rngs=nnx.Rngs(0)),
  ...                            optax.sgd(0.1), jax.random.key(0))
  >>> x = jax.random.normal(jax.random.key(1), (64, 2))
  >>> batch = {"inputs": x, "targets": x @ jnp.array([2.0, -3.4]) + 4.2}
  >>> step = jax.jit(lambda s, b: train_step(s, b, task=REGRESSION))
  >>> first = step(state, batch)[1].compute()["loss"]
  >>> for _ in range(50):
  ...   state, metrics = step(state, batch)
  >>> bool(metrics.compute()["loss"] < first / 100), int(state.step)
  (True, 50)
  """
  state, metrics, _ = _step(state, batch, task=task, loss_fn=loss_fn, axis_name=axis_name,
                            skip_nonfinite=skip_nonfinite, augment=augment,
                            model_transform=model_transform)
  return state, metrics


def _step(state: TrainState, batch: dict, *, task: Task = CLASSIFICATION,
          loss_fn: LossFn | None = None, axis_name: str | None = None,
          skip_nonfinite: bool = False, augment: Callable | None = None,
          model_transform: Callable | None = None, param_norm: bool = True):
  """`train_step`, also returning the step's health: its loss, gradient norm, non-finiteness.

  `param_norm=False` reports 0 for the parameters' norm (a pass over all weights),
  which `train_steps` measures once per chunk instead.
  """
  # A fresh key per step (for dropout) without carrying a split key in the state.
  step_rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    step_rng = jax.random.fold_in(step_rng, jax.lax.axis_index(axis_name))
  inputs = batch["inputs"]
  if augment is not None:
    inputs = augment(inputs, jax.random.fold_in(step_rng, 1))
  forward = lambda params, inputs, rng: state.apply_model(params, inputs, train=True, rng=rng)
  if model_transform is not None:
    forward = model_transform(forward)
  weights = batch.get("weights")

  def objective(params):
    outputs, model_state = _call_model(forward, state, params, inputs, step_rng)
    per_example = _per_example_loss(task, loss_fn, outputs, {**batch, "inputs": inputs})
    return losses.weighted_mean(per_example, weights), (per_example, outputs, model_state)

  grad_fn = jax.value_and_grad(objective, has_aux=True)
  (loss, (per_example, outputs, model_state)), grads = grad_fn(state.params)
  if axis_name is not None:  # Under pmap; with jit + sharding XLA adds this itself.
    grads = jax.lax.pmean(grads, axis_name)
    model_state = jax.lax.pmean(model_state, axis_name)
  model_state = finetune.keep_frozen_state(model_state, state.model_state, state.frozen_layers)
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

  mask = weights
  if skip_nonfinite:  # A skipped step's examples count for nothing.
    mask = finite * (jnp.ones_like(per_example) if weights is None else weights)
  metrics = _metrics(task.train_metrics, axis_name, loss=per_example, logits=outputs,
                     labels=batch["targets"], mask=mask,
                     learning_rate=_learning_rate(opt_state), grad_norm=grad_norm,
                     param_norm=optax.tree.norm(new_state.params) if param_norm else 0.0,
                     nonfinite=~finite)
  health = {"loss": loss, "grad_norm": grad_norm, "nonfinite": ~finite}
  return new_state, metrics, health


def _call_model(forward, state: TrainState, params, inputs, *rest):
  """`forward(params, inputs, *rest)`, naming the inputs when the model cannot take them.

  Runs while the step is traced, so the check costs nothing per step.
  """
  try:
    return forward(params, inputs, *rest)
  except (TypeError, ValueError) as e:
    expected = state.expected_input()
    raise ValueError(
        f"{_model_name(state)} cannot take inputs shaped {tuple(inputs.shape[1:])} "
        f"({inputs.dtype}) per example (a batch of {inputs.shape[0]})"
        f"{'; it takes ' + expected if expected else ''}: "
        f"{str(e).splitlines()[0][:300].rstrip('.')}. Feed it "
        f"the input shape it was built for, or build it for this one.") from e


def _model_name(state: TrainState) -> str:
  """The model's class name, from its graph (the first node is the model itself)."""
  nodes = getattr(state.graphdef, "nodes", None) or [None]
  model = getattr(nodes[0], "type", None)
  return getattr(model, "__name__", "The model")


def _per_example_loss(task: Task, loss_fn: LossFn | None, outputs, batch) -> jax.Array:
  values = (task.loss(outputs, batch["targets"]) if loss_fn is None
            else loss_fn(outputs, batch))
  batch_size = jax.tree.leaves(batch["targets"])[0].shape[0]
  if values.shape != (batch_size,):
    raise ValueError(f"The loss must give one value per example, shape ({batch_size},), but "
                     f"gave shape {values.shape}; average the other axes inside the loss "
                     "(jaxlearn.core.losses' losses do).")
  return values


def train_steps(state: TrainState, batch_at: Callable[[jax.Array], dict], count, *,
                max_count: int, **step_options):
  """`count` train steps on batch_at(0), batch_at(1), ... as one compiled loop.

  `count` (1 <= count <= `max_count`) may be traced, so one compiled program
  serves every chunk of an epoch; a dispatch from Python costs about as much
  as a small model's step, so the training loop runs steps in chunks.
  `step_options` go to `train_step`.

  Returns (state, the steps' merged metrics, the steps' health: arrays of
  length `max_count` whose first `count` entries hold each step's "loss",
  "grad_norm" and "nonfinite"). The merged "param_norm" is that of the
  chunk's final parameters.
  """

  def step(i, state):
    return _step(state, batch_at(i), param_norm=False, **step_options)

  metrics_shape, health_shape = jax.eval_shape(step, 0, state)[1:]
  zeros = lambda shape: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shape)
  health_zeros = {k: jnp.zeros((max_count, *v.shape), v.dtype) for k, v in health_shape.items()}

  def body(i, carry):
    state, merged, health = carry
    state, metrics, step_health = step(i, state)
    # The first step's metrics as they are; later ones merged in (any metric kind).
    merged = jax.tree.map(lambda first, later: jnp.where(i == 0, first, later), metrics,
                          merged.merge(metrics))
    health = {k: v.at[i].set(step_health[k]) for k, v in health.items()}
    return state, merged, health

  state, merged, health = jax.lax.fori_loop(0, count, body,
                                            (state, zeros(metrics_shape), health_zeros))
  if hasattr(merged, "param_norm"):
    final_norm = type(merged.param_norm)(total=optax.tree.norm(state.params),
                                         count=jnp.ones((), jnp.int32))
    merged = merged.replace(param_norm=final_norm)
  return state, merged, health


def _updated_ema(state: TrainState, params, opt_state):
  """The weights' moving average, advanced only by steps that changed the weights."""
  if state.ema_params is None:
    return None
  decay = state.ema_decay
  moved = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state.ema_params, params)
  applied = optim.applied_update(opt_state)
  return jax.tree.map(lambda new, old: jnp.where(applied, new, old), moved, state.ema_params)


def eval_step(state: TrainState, batch: dict, *, task: Task = CLASSIFICATION,
              loss_fn: LossFn | None = None, axis_name: str | None = None,
              model_transform: Callable | None = None):
  """Metrics of the model in eval mode (EMA weights if kept); "weights" 0 marks padding.

  >>> import jax, jax.numpy as jnp, optax
  >>> from flax import nnx
  >>> from jaxlearn import create_train_state
  >>> from jaxlearn.models import SimpleClassifier
  >>> state = create_train_state(SimpleClassifier(in_features=4, num_classes=3, rngs=nnx.Rngs(0)),
  ...                            optax.adam(1e-3), jax.random.key(0))
  >>> batch = {"inputs": jnp.ones((4, 4)), "targets": jnp.array([0, 1, 2, 0]),
  ...          "weights": jnp.array([1.0, 1.0, 1.0, 0.0])}  # The last is padding.
  >>> sorted(eval_step(state, batch).compute())
  ['accuracy', 'loss']
  """
  forward = lambda params, inputs: state.apply_model(params, inputs, train=False)
  if model_transform is not None:
    forward = model_transform(forward)
  outputs, _ = _call_model(forward, state, state.eval_params, batch["inputs"])
  return _metrics(task.eval_metrics, axis_name,
                  loss=_per_example_loss(task, loss_fn, outputs, batch), logits=outputs,
                  labels=batch["targets"], mask=batch.get("weights"))


def _metrics(collection, axis_name, **model_output):
  if axis_name is None:
    return collection.single_from_model_output(**model_output)
  return collection.gather_from_model_output(axis_name=axis_name, **model_output)


def _learning_rate(opt_state):
  try:
    return optim.learning_rate(opt_state)
  except (AttributeError, KeyError, TypeError):  # An optimizer built without inject_hyperparams.
    return jax.numpy.nan
