"""Data parallelism over all local devices with `jax.jit` and a one-axis mesh.

The state is replicated, every batch is split along a `data` mesh axis, and XLA
inserts the gradient all-reduce. The same `train_step` also runs under
`jax.pmap(..., axis_name=...)` (see `jaxlearn.step`).
"""

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> jax.sharding.Mesh:
  """A mesh with every device on the `data` axis."""
  # Auto axes: XLA propagates shardings through the step (GSPMD), as in big_vision.
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
  """A batch split along its leading (example) axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def stacked_batch_sharding(mesh) -> NamedSharding:
  """A (steps, batch, ...) stack of batches, each batch split across devices."""
  return NamedSharding(mesh, P(None, DATA_AXIS))
