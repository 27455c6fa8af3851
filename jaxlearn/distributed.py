"""Many processes, one run: `jax.distributed` and what only the primary process does.

Every process runs the same program (multi-controller SPMD): it reads the data,
builds the same global arrays over the devices of all processes, and runs the
same compiled steps, whose gradient all-reduce XLA spreads over all of them.
Checkpoints are Orbax's multi-process ones (every process takes part). Only
process 0 writes the workdir's logs, TensorBoard files and JSON records.
"""

import os

from absl import logging
import jax

# Environment variables by which a cluster tells `jax.distributed.initialize()` the topology
# (Cloud TPU, SLURM, Open MPI, Kubernetes with JAX's own variables).
CLUSTER_ENV = ("TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
               "JAX_COORDINATOR_ADDRESS")


def initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               heartbeat_timeout_s: int = 30) -> None:
  """Joins the run's processes: from the flags when given, else as the cluster says.

  Without flags or cluster variables the run is one process, as before. A
  process that stops answering for `heartbeat_timeout_s` ends the others with
  an error instead of leaving them waiting in a collective.
  """
  given = (coordinator_address, num_processes > 0, process_id >= 0)
  if any(given) and not all(given):
    from jaxlearn.errors import ConfigError  # pylint: disable=import-outside-toplevel
    raise ConfigError("--coordinator_address, --num_processes and --process_id go together: "
                      "pass all three (the same address and count to every process, ids 0 to "
                      "N-1), or none to run one process (or let a cluster's variables say).")
  detected = [name for name in CLUSTER_ENV if os.environ.get(name)]
  if not all(given) and not detected:
    return
  # CPU devices of different processes reduce through gloo (GPUs and TPUs need nothing).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if all(given):
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               heartbeat_timeout_seconds=heartbeat_timeout_s)
  else:
    jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout_s)
  logging.info("Process %d of %d; %d of the run's %d devices are here.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def is_primary() -> bool:
  """Whether this process writes the workdir's logs and records (process 0)."""
  return jax.process_index() == 0
