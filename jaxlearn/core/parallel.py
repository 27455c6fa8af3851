"""Data parallelism over all devices (of all processes) with `jax.jit` and a one-axis mesh.

Every batch is split along a `data` mesh axis and XLA inserts the gradient
all-reduce. The state is replicated, or with `config.sharding = "fsdp"` each
parameter and optimizer-state array is split over the same axis (fully sharded
data parallelism: XLA gathers a layer's weights where the step needs them), so
that a model too big for one device's memory still trains. The same
`train_step` also runs under `jax.pmap(..., axis_name=...)` (see `jaxlearn.core.step`).
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


def state_sharding(state, mesh, how: str = "replicated"):
  """The sharding of each array of `state`: replicated, or for "fsdp" split over the mesh."""
  if how == "replicated":
    return replicated(mesh)
  return jax.tree.map(lambda x: fsdp_sharding(x.shape, mesh), state)


def fsdp_sharding(shape: tuple, mesh) -> NamedSharding:
  """Splits an array's largest axis that the device count divides; small arrays stay whole."""
  devices = mesh.shape[DATA_AXIS]
  for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
    if shape[axis] >= devices and shape[axis] % devices == 0:
      return NamedSharding(mesh, P(*(DATA_AXIS if a == axis else None
                                     for a in range(len(shape)))))
  return replicated(mesh)


def bytes_per_device(tree) -> tuple[int, int]:
  """(bytes on this process's first device, bytes of the whole tree) of a tree of arrays."""
  leaves = [x for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)]
  device = jax.local_devices()[0]
  here = sum(s.data.nbytes for x in leaves for s in x.addressable_shards if s.device == device)
  return here, sum(x.nbytes for x in leaves)
