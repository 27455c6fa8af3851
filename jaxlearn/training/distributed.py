"""Many processes, one run: `jax.distributed` and what only the primary process does.

Every process runs the same program (multi-controller SPMD): it reads the data,
builds the same global arrays over the devices of all processes, and runs the
same compiled steps, whose gradient all-reduce XLA spreads over all of them.
Checkpoints are Orbax's multi-process ones (every process takes part). Only
process 0 writes the workdir's logs, TensorBoard files and JSON records.
"""

import atexit
import os
import threading
import time

from absl import logging
import jax

from jaxlearn.errors import EXIT_PEER_LOST

# The share of JAX's heartbeat timeout after which a silent process counts as lost. JAX's
# coordinator declares a process dead as early as half its timeout after it dies (its last
# heartbeat can be that old), so jaxlearn's watch must speak well before that.
LOST_AFTER_SHARE = 0.3
# Where the watch keeps each process's beat count ("beats/3") and end mark ("done/3").
_WATCH_KEYS = "jaxlearn/peer_watch/"

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
  if jax.process_count() > 1:
    from jax._src import distributed as jax_distributed  # pylint: disable=import-outside-toplevel
    PeerWatch(jax_distributed.global_state.client, jax.process_index(), jax.process_count(),
              lost_after_s=LOST_AFTER_SHARE * heartbeat_timeout_s).start()


def is_primary() -> bool:
  """Whether this process writes the workdir's logs and records (process 0)."""
  return jax.process_index() == 0


def peer_lost_message(reason: str) -> str:
  """What a process prints when the run cannot go on without another of its processes."""
  first_line = reason.strip().splitlines()[0] if reason.strip() else "no reason given"
  return (f"Another process of this run stopped or cannot be reached ({first_line[:300]}), so "
          "this one stops too. Start all the run's processes again with the same flags: the run "
          "resumes from the latest checkpoint in the workdir. If a process was killed for "
          "memory, give it more or lower --config.batch_size.")


def exit_peer_lost(reason: str) -> None:
  """Ends this process at once with one paragraph and exit code 3.

  At once (`os._exit`): JAX's exit handlers would wait at a shutdown barrier
  for the lost process and then abort with a stack dump. Checkpoints are
  written whole and renamed into place, so ending here loses none.
  """
  os.write(2, f"\njaxlearn: error: {peer_lost_message(reason)}\n".encode())
  os._exit(EXIT_PEER_LOST)  # pylint: disable=protected-access


# Words in the errors that a collective or the coordination service raises when a process is gone.
_PEER_LOST_SIGNS = ("heartbeat", "connection closed by peer", "connection reset by peer",
                    "barrier failed", "coordination service", "gloo", "unavailable:")


def is_peer_lost(error: BaseException) -> bool:
  """Whether `error` says that another process of a many-process run went away."""
  text = str(error).lower()
  return jax.process_count() > 1 and any(sign in text for sign in _PEER_LOST_SIGNS)


class PeerWatch:
  """Ends this process with one clear paragraph when another process of the run is gone.

  JAX notices a lost process too, between half and all of the heartbeat
  timeout, but ends the survivors with a fatal log and a C++ stack dump (its
  callback for this cannot be set from Python). So each process counts its own
  beats in the coordinator's key-value store once a second and reads all the
  counts in one call; a count that stops for `lost_after_s` (under half JAX's
  timeout, so this speaks first) or a coordinator that stops answering ends
  the process with `exit_peer_lost`. A process that ends normally says so first, and is then
  no longer watched.
  """

  BEAT_S = 1.0
  on_lost = staticmethod(exit_peer_lost)

  def __init__(self, client, me: int, count: int, lost_after_s: float):
    """`client`: JAX's distributed client (its key-value store); `me` of `count` processes."""
    self.client, self.me, self.count = client, me, count
    self.lost_after_s = max(2 * self.BEAT_S, lost_after_s)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._watch, name="jaxlearn-peer-watch", daemon=True)

  def start(self) -> None:
    self._thread.start()
    # Before JAX's own exit handler (registered earlier, so run later), which waits for all.
    atexit.register(self.stop)

  def stop(self) -> None:
    """Tells the other processes that this one ended on purpose, and stops watching."""
    self._stop.set()
    self._thread.join()
    try:
      self.client.key_value_set(f"{_WATCH_KEYS}done/{self.me}", "1", allow_overwrite=True)
    except Exception:  # pylint: disable=broad-except  # The coordinator may be gone already.
      pass

  def _watch(self) -> None:
    last_count, last_change = {}, {}
    unanswered_since = None
    while not self._stop.wait(self.BEAT_S):
      now = time.monotonic()
      try:
        self.client.key_value_increment(f"{_WATCH_KEYS}beats/{self.me}", 1)
        entries = self.client.key_value_dir_get(_WATCH_KEYS)
        unanswered_since = None
      except Exception as e:  # pylint: disable=broad-except  # Any RPC failure to the coordinator.
        unanswered_since = unanswered_since or now
        if now - unanswered_since > self.lost_after_s and not self._stop.is_set():
          self.on_lost(f"the coordinator, process 0, has not answered for "
                       f"{now - unanswered_since:.0f} s: {e}")
        continue
      for p, count in self._counts(entries).items():
        if count is None:  # Ended on purpose.
          continue
        if last_count.get(p) != count:
          last_count[p], last_change[p] = count, now
        elif now - last_change[p] > self.lost_after_s and not self._stop.is_set():
          self.on_lost(f"process {p} has not answered for {now - last_change[p]:.0f} s")

  def _counts(self, entries: list[tuple[str, str]]) -> dict[int, int | None]:
    """Every other process's beat count (0 before its first; None once it has ended).

    `entries`: the (key, value) pairs under `_WATCH_KEYS`; a key ends in
    "beats/<process>" or "done/<process>".
    """
    beats, done = {}, set()
    for key, value in entries:
      kind, process = key.rsplit("/", 2)[-2:]
      if kind == "done":
        done.add(int(process))
      elif kind == "beats":
        beats[int(process)] = int(value)
    return {p: None if p in done else beats.get(p, 0) for p in range(self.count) if p != self.me}
