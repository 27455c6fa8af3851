"""The train state: everything that changes during training, as one pytree."""

from typing import Any

import flax.struct
from flax import nnx
import jax
import jax.numpy as jnp
import optax


# `nnx.pure` (State of Variables -> State of plain arrays) is `nnx.as_pure` in newer flax.
_as_arrays = getattr(nnx, "as_pure", None) or nnx.pure


@flax.struct.dataclass
class TrainState:
  """Parameters, model state (e.g. batch-norm statistics), optimizer state, step and RNG.

  The model's graph (`graphdef`) and the optimizer (`tx`) are static: they are
  part of the pytree's structure, not its leaves, so `jax.jit`/`jax.pmap` of a
  step treat them as compile-time constants and checkpoints hold only arrays.
  """
  step: jax.Array
  params: nnx.State
  model_state: nnx.State
  opt_state: optax.OptState
  rng: jax.Array
  graphdef: nnx.GraphDef = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  def apply_model(self, params, inputs, *, train: bool, rng: jax.Array | None = None):
    """Runs the model as a pure function; returns (outputs, updated model state)."""
    model = nnx.merge(self.graphdef, params, self.model_state)
    rngs = nnx.Rngs(dropout=rng) if rng is not None else None
    outputs = model(inputs, train=train, rngs=rngs)
    _, _, model_state = nnx.split(model, nnx.Param, ...)
    return outputs, _as_arrays(model_state)

  def checkpoint_tree(self) -> dict[str, Any]:
    """The arrays a checkpoint holds."""
    return {"step": self.step, "params": self.params, "model_state": self.model_state,
            "opt_state": self.opt_state, "rng": self.rng}


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation,
                       rng: jax.Array) -> TrainState:
  """Splits `model` once into graph + state and initialises the optimizer.

  Example:
    model = LeNet5(rngs=nnx.Rngs(0))
    state = create_train_state(model, optax.adam(1e-3), jax.random.key(1))
  """
  graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
  params, model_state = _as_arrays(params), _as_arrays(model_state)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                    opt_state=tx.init(params), rng=rng, graphdef=graphdef, tx=tx)


def num_params(state: TrainState) -> int:
  return sum(p.size for p in jax.tree.leaves(state.params))
