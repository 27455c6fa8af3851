"""The train state: everything that changes during training, as one pytree."""

from typing import Any

import flax.struct
from flax import nnx
import jax
import jax.numpy as jnp
import optax


# `nnx.pure` (State of Variables -> State of plain arrays) is `nnx.as_pure` in newer flax.
pure = getattr(nnx, "as_pure", None) or nnx.pure


@flax.struct.dataclass
class TrainState:
  """Parameters, model state (e.g. batch-norm statistics), optimizer state, step and RNG.

  The model's graph (`graphdef`), the optimizer (`tx`), the compute dtype and
  the EMA decay are static: they are part of the pytree's structure, not its
  leaves, so `jax.jit`/`jax.pmap` of a step treat them as compile-time
  constants and checkpoints hold only arrays. `ema_params` is None unless an
  exponential moving average of the weights is kept (`ema_decay` > 0); then
  evaluation uses it.
  """
  step: jax.Array
  params: nnx.State
  model_state: nnx.State
  opt_state: optax.OptState
  rng: jax.Array
  graphdef: nnx.GraphDef = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  ema_params: nnx.State | None = None
  ema_decay: float = flax.struct.field(pytree_node=False, default=0.0)
  # None: compute in the parameters' dtype; jnp.bfloat16: mixed precision.
  compute_dtype: Any = flax.struct.field(pytree_node=False, default=None)
  # Layers whose model state (batch-norm statistics) training leaves as it is: those
  # all of whose parameters are frozen (`jaxlearn.core.finetune`).
  frozen_layers: tuple = flax.struct.field(pytree_node=False, default=())

  @property
  def eval_params(self) -> nnx.State:
    """The weights evaluation uses: the EMA when one is kept."""
    return self.params if self.ema_params is None else self.ema_params

  def apply_model(self, params, inputs, *, train: bool, rng: jax.Array | None = None):
    """Runs the model as a pure function; returns (outputs, updated model state).

    Under mixed precision the parameters, model state and inputs are cast to
    `compute_dtype` for the forward pass only: gradients, parameters and the
    returned model state stay float32, and so do the outputs the loss sees.
    """
    model_state = self.model_state
    if self.compute_dtype is not None:
      params, model_state, inputs = _cast_floats((params, model_state, inputs),
                                                 self.compute_dtype)
    model = nnx.merge(self.graphdef, params, model_state)
    rngs = nnx.Rngs(dropout=rng) if rng is not None else None
    outputs = model(inputs, train=train, rngs=rngs)
    _, _, new_model_state = nnx.split(model, nnx.Param, ...)
    new_model_state = pure(new_model_state)
    if self.compute_dtype is not None:
      outputs = _cast_floats(outputs, jnp.float32)
      new_model_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_model_state,
                                     self.model_state)
    return outputs, new_model_state

  def expected_input(self) -> str:
    """What one example must look like, in the model's words (for error messages)."""
    model = nnx.merge(self.graphdef, self.params, self.model_state)
    return getattr(model, "expected_input", "")

  def checkpoint_tree(self) -> dict[str, Any]:
    """The arrays a checkpoint holds."""
    tree = {"step": self.step, "params": self.params, "model_state": self.model_state,
            "opt_state": self.opt_state, "rng": self.rng}
    if self.ema_params is not None:
      tree["ema_params"] = self.ema_params
    return tree


def _cast_floats(tree, dtype):
  """Casts the floating-point leaves of `tree` (not integer inputs such as token ids)."""
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, rng: jax.Array, *,
                       ema_decay: float = 0.0, compute_dtype=None,
                       frozen_layers: tuple = ()) -> TrainState:
  """Splits `model` once into graph + state and initialises the optimizer.

  Args:
    model: an NNX module called as `model(inputs, train=..., rngs=...)`.
    tx: the optax optimizer.
    rng: the key each step folds its step number into (dropout).
    ema_decay: > 0 keeps an exponential moving average of the weights, which
      evaluation then uses.
    compute_dtype: `jnp.bfloat16` for mixed precision; None computes in float32.

  Returns:
    A `TrainState` at step 0, ready for `train_step`.

  >>> from flax import nnx
  >>> import jax, optax
  >>> from jaxlearn.models import LeNet5
  >>> state = create_train_state(LeNet5(rngs=nnx.Rngs(0)), optax.adam(1e-3), jax.random.key(1))
  >>> int(state.step), num_params(state)
  (0, 61706)
  """
  graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
  params, model_state = pure(params), pure(model_state)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                    opt_state=tx.init(params), rng=rng, graphdef=graphdef, tx=tx,
                    ema_params=jax.tree.map(jnp.copy, params) if ema_decay else None,
                    ema_decay=ema_decay, compute_dtype=compute_dtype,
                    frozen_layers=frozen_layers)


def num_params(state: TrainState) -> int:
  return sum(p.size for p in jax.tree.leaves(state.params))
