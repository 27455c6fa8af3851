"""Run with 8 forced CPU devices: trains 5 steps four ways and prints the differences as JSON.

Used by tests/test_step.py (a subprocess, because the device count is fixed at JAX start-up).
"""

import functools
import json

from flax import jax_utils, nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlearn import create_train_state, train_step
from jaxlearn.core import parallel
from jaxlearn.data import pipeline
from jaxlearn.models import LeNet5
from jaxlearn.training import compiled


def main():
  n = jax.device_count()
  fresh = lambda: create_train_state(LeNet5(rngs=nnx.Rngs(0)), optax.sgd(0.05, momentum=0.9),
                                     jax.random.PRNGKey(1))
  rng = np.random.default_rng(0)
  batches = [{"inputs": rng.normal(size=(64, 28, 28, 1)).astype(np.float32),
              "targets": rng.integers(0, 10, 64).astype(np.int32)} for _ in range(5)]

  single = fresh()
  for b in batches:
    single, m_single = jax.jit(train_step)(single, b)

  mesh = parallel.make_mesh()
  rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  sharded_step = jax.jit(train_step, in_shardings=(rep, data), out_shardings=(rep, rep),
                         donate_argnums=0)
  sharded = jax.device_put(fresh(), rep)
  for b in batches:
    sharded, m_sharded = sharded_step(sharded, jax.device_put(b, data))

  pmapped_step = jax.pmap(functools.partial(train_step, axis_name="batch"), axis_name="batch")
  pmapped = jax_utils.replicate(fresh())
  for b in batches:
    pmapped, m_pmap = pmapped_step(pmapped, jax.tree.map(
        lambda a: a.reshape(n, -1, *a.shape[1:]), b))
  pmapped = jax_utils.unreplicate(pmapped)

  # The training loop's own path: a chunk of steps over batches stacked and sharded.
  train_chunk, _ = compiled.compile_steps(mesh, steps_per_call=8)
  arrays = jax.device_put(jax.tree.map(lambda *b: np.concatenate(b), *batches), rep)
  order = jax.device_put(np.arange(5 * 64).reshape(5, 64), parallel.stacked_batch_sharding(mesh))
  epoch = pipeline.Epoch(arrays, order)
  chunked, _, chunk_steps = train_chunk(jax.device_put(fresh(), rep), epoch, 0, 5)

  def max_diff(a, b):
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  print(json.dumps({
      "devices": n,
      "jit_cache_size": sharded_step._cache_size(),
      "max_diff_sharded": max_diff(single.params, sharded.params),
      "max_diff_pmap": max_diff(single.params, pmapped.params),
      "max_diff_chunked": max_diff(single.params, chunked.params),
      "loss_single": float(m_single.compute()["loss"]),
      "loss_chunked": float(chunk_steps["loss"][4]),  # The last step's, like the others.
      "loss_sharded": float(m_sharded.compute()["loss"]),
      "loss_pmap": float(jax_utils.unreplicate(m_pmap).compute()["loss"]),
  }))


if __name__ == "__main__":
  main()
