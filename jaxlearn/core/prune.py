"""Magnitude pruning during training: weights set to exactly zero, more of them as training goes.

  --config.prune.sparsity=0.9 --config.prune.epochs=3 [--config.prune.scope=layer]

The target sparsity rises from 0 to `sparsity` over the first `prune.epochs`
epochs along Zhu & Gupta's cubic schedule (2017), s(t) = s (1 - (1 - t/T)^3).
After every update the smallest-magnitude weights among those matching
`prune.params` (regular expressions over parameter paths; by default the
kernels, not biases or norm scales) are zeroed, ranked over all of them
(`global`) or within each array (`layer`). The mask lives in the optimizer
state: a weight once pruned stays exactly zero for the rest of training and in
every checkpoint, whatever its gradient.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlearn.core.paths import matches, path_name

SCOPES = ("global", "layer")


class PruneState(NamedTuple):
  count: jax.Array  # updates so far
  masks: optax.Params  # 1 where a weight is kept (prunable arrays; None elsewhere)


def cubic_sparsity(final: float, ramp_steps: int, step) -> jax.Array:
  """Zhu & Gupta's schedule: 0 at step 0, `final` from `ramp_steps` on."""
  progress = jnp.clip(step / max(ramp_steps, 1), 0.0, 1.0)
  return final * (1.0 - (1.0 - progress) ** 3)


def magnitude_pruning(sparsity: float, ramp_steps: int, patterns: list[str],
                      scope: str = "global") -> optax.GradientTransformation:
  """Zeroes the smallest-magnitude prunable weights after each update (see the module doc)."""
  prunable = lambda path: matches(path_name(path), patterns)

  def init(params):
    masks = jax.tree_util.tree_map_with_path(
        lambda path, p: jnp.ones(p.shape, jnp.bool_) if prunable(path) else None, params)
    return PruneState(jnp.zeros((), jnp.int32), masks)

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("magnitude_pruning needs the parameters (tx.update(g, s, params)).")
    target = cubic_sparsity(sparsity, ramp_steps, state.count + 1)
    new = jax.tree.map(lambda p, u: p + u, params, updates)
    kept = jax.tree.map(lambda mask, p: None if mask is None else jnp.where(mask, p, 0.0),
                        state.masks, new, is_leaf=lambda x: x is None)
    masks = _keep_largest(kept, state.masks, target, scope)
    pruned_updates = jax.tree.map(
        lambda mask, p, u: u if mask is None else jnp.where(mask, p + u, 0.0) - p,
        masks, params, updates, is_leaf=lambda x: x is None)
    return pruned_updates, PruneState(state.count + 1, masks)

  return optax.GradientTransformation(init, update)


def _keep_largest(values, masks, target, scope: str):
  """New masks: the old ones, less the smallest `target` share of |values| (by scope)."""
  arrays = [v for v in jax.tree.leaves(values, is_leaf=lambda x: x is None) if v is not None]
  if scope == "global":
    magnitudes = jnp.concatenate([jnp.abs(a).ravel() for a in arrays])
    threshold = _threshold(magnitudes, target)
    return jax.tree.map(lambda mask, v: None if mask is None else mask & (jnp.abs(v) > threshold),
                        masks, values, is_leaf=lambda x: x is None)
  return jax.tree.map(
      lambda mask, v: None if mask is None else mask & (jnp.abs(v) > _threshold(
          jnp.abs(v).ravel(), target)), masks, values, is_leaf=lambda x: x is None)


def _threshold(magnitudes: jax.Array, target) -> jax.Array:
  """The magnitude at or below which a `target` share of `magnitudes` lies (-1: prune none)."""
  count = jnp.floor(target * magnitudes.size).astype(jnp.int32)
  ordered = jnp.sort(magnitudes)
  return jnp.where(count > 0, ordered[jnp.maximum(count - 1, 0)], -1.0)


def sparsity_of(params, patterns: list[str]) -> dict[str, float]:
  """Share of exact zeros per prunable array, and over all of them ("all")."""
  zeros, sizes = {}, {}
  for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = path_name(path)
    if matches(name, patterns):
      zeros[name], sizes[name] = int((p == 0).sum()), int(p.size)
  shares = {n: zeros[n] / sizes[n] for n in zeros}
  shares["all"] = sum(zeros.values()) / max(1, sum(sizes.values()))
  return shares
