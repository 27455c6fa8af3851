"""Dropout whose rate can also be a traced number: one program trains trials of several rates.

`Dropout` is `nnx.Dropout`, except that inside `rate_of_every_dropout(r)` it
drops with rate `r` (a traced scalar, e.g. one trial's rate in a vectorised
sweep, see `jaxlearn.sweeps.vectorised`) instead of the rate it was built
with. The zoo's models build every dropout layer from their one `dropout`
argument, so that replaces the model's rate as a whole. At rate 0 the mask
keeps everything and the output equals the input exactly.
"""

import contextlib
import contextvars

import jax
import jax.numpy as jnp
from flax import nnx

_TRACED_RATE = contextvars.ContextVar("jaxlearn_dropout_rate", default=None)


@contextlib.contextmanager
def rate_of_every_dropout(rate: jax.Array):
  """While a step is traced in this context, every `Dropout` drops with `rate`."""
  token = _TRACED_RATE.set(rate)
  try:
    yield
  finally:
    _TRACED_RATE.reset(token)


def with_rate(forward, rate: jax.Array):
  """`forward` (a model_transform's function) traced with every dropout at `rate`."""

  def call(*args, **kwargs):
    with rate_of_every_dropout(rate):
      return forward(*args, **kwargs)

  return call


class Dropout(nnx.Dropout):
  """`nnx.Dropout`; inside `rate_of_every_dropout(r)` its rate is `r`."""

  def __call__(self, inputs, *, deterministic: bool | None = None, rngs=None):
    rate = _TRACED_RATE.get()
    if rate is None:
      return super().__call__(inputs, deterministic=deterministic, rngs=rngs)
    if self.deterministic if deterministic is None else deterministic:
      return inputs
    rngs = self.rngs if rngs is None else rngs
    if isinstance(rngs, nnx.Rngs):
      key = rngs[self.rng_collection]()
    else:  # An RngStream, or a key itself (as nnx.Dropout takes them).
      key = rngs if isinstance(rngs, jax.Array) else rngs()
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, p=keep, shape=inputs.shape)
    return jax.lax.select(mask, inputs / jnp.asarray(keep, inputs.dtype), jnp.zeros_like(inputs))


def only_ours(model: nnx.Module) -> str:
  """'' when every dropout of `model` is a `Dropout` (its rate can be traced), else which
  layer is not (e.g. attention's own dropout)."""
  for path, node in nnx.iter_graph(model):
    name = "/".join(map(str, path))
    if isinstance(node, nnx.MultiHeadAttention):
      return f"{name} ({type(node).__name__}) drops attention weights with its own rate"
    if isinstance(node, nnx.Dropout) and not isinstance(node, Dropout):
      return f"{name} is an nnx.Dropout of fixed rate"
  return ""
