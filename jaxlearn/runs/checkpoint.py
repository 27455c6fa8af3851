"""Orbax checkpoints of a run: `latest` to resume from and `best` by validation metric.

Both live under WORKDIR/checkpoints/ and neither replaces the other, so resuming
never loses the best model. A checkpoint holds the train state's arrays, a
small JSON record of the loop's progress (epoch, best metric so far, history),
and a SHA-256 of every array written with it: a restore (to resume, to test,
to predict) recomputes them, so a checkpoint damaged on disk after it was
saved is refused, never used.
"""

import contextlib
import hashlib
import logging as python_logging
import os
import sys

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxlearn.core.paths import matches, path_name
from jaxlearn.core.state import TrainState
from jaxlearn.errors import CheckpointError
from jaxlearn.runs.workdir import RunDir


class Checkpoints:
  """The `latest` and `best` checkpoint series of one workdir."""

  def __init__(self, workdir: str):
    run_dir = RunDir(os.path.abspath(workdir))
    self.directory = run_dir.checkpoints
    with _orbax_errors_raised_not_logged():
      self._latest = _manager(run_dir.series("latest"), max_to_keep=2)
      self._best = _manager(run_dir.series("best"), max_to_keep=1)

  def latest_step(self) -> int | None:
    """The step of the newest `latest` checkpoint (None: none saved yet)."""
    return self._latest.latest_step()

  def save_latest(self, state: TrainState, progress: dict) -> None:
    _save(self._latest, state, progress)

  def save_best(self, state: TrainState, progress: dict) -> None:
    _save(self._best, state, progress)

  def restore_latest(self, state: TrainState) -> tuple[TrainState, dict | None]:
    """`state` with the latest checkpoint's arrays, and its progress; or (state, None)."""
    return _restore(self._latest, state)

  def restore_best(self, state: TrainState) -> tuple[TrainState, dict | None]:
    return _restore(self._best, state)

  def close(self) -> None:
    for manager in (self._latest, self._best):
      manager.wait_until_finished()
      manager.close()


def _manager(directory: str, max_to_keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  # Naming the handlers lets a fresh process read metadata before restoring.
  handlers = {"state": ocp.StandardCheckpointHandler(), "progress": ocp.JsonCheckpointHandler(),
              "checksums": ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def _save(manager, state: TrainState, progress: dict) -> None:
  step = int(state.step)
  if manager.latest_step() == step:
    return  # Already saved at this step (e.g. an interrupt right after an epoch's save).
  tree = state.checkpoint_tree()
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                             progress=ocp.args.JsonSave(progress),
                                             checksums=ocp.args.JsonSave(checksums(tree))))
  manager.wait_until_finished()


def checksums(tree) -> dict[str, str]:
  """{array path: SHA-256 of its bytes} for the arrays this process holds whole.

  An array split over several processes (fsdp across hosts) has no whole copy
  here and is left out; each process's shards are Orbax's to check.
  """
  sums = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      continue
    array = np.ascontiguousarray(jax.device_get(leaf))
    digest = hashlib.sha256(str((array.dtype.str, array.shape)).encode())
    digest.update(array.tobytes())
    sums[path_name(path)] = digest.hexdigest()
  return sums


def _verify(directory: str, manager, step: int, restored_state) -> None:
  """Raises a CheckpointError when the arrays read differ from the checksums saved with them
  (a checkpoint written before jaxlearn kept checksums is taken as it is)."""
  where = os.path.join(directory, str(step))
  if not os.path.isdir(os.path.join(where, "checksums")):
    return
  try:
    saved = manager.restore(step, args=ocp.args.Composite(
        checksums=ocp.args.JsonRestore()))["checksums"]
  except Exception as e:  # pylint: disable=broad-except
    raise _corrupt(where, e) from e
  # Only arrays this process holds whole on both sides are compared: one split over several
  # processes (fsdp) is Orbax's to check, and a missing array fails its structure check first.
  now = checksums(restored_state)
  differing = sorted(p for p in saved if p in now and now[p] != saved[p])
  if differing:
    shown = ", ".join(differing[:4]) + (
        f" and {len(differing) - 4} more" if len(differing) > 4 else "")
    raise CheckpointError(
        f"The checkpoint {where} is damaged: {shown} no longer match the checksums written "
        "with it (the files changed on disk after they were saved). Move that step directory "
        "aside to use the one before it, or train again in a new --workdir. Nothing was "
        "changed in the workdir.")


class _DropOrbaxErrors(python_logging.Filter):

  def filter(self, record) -> bool:
    return not (record.levelno >= python_logging.ERROR and "orbax" in record.pathname)


def _is_failed_read_leftover(unraisable) -> bool:
  """Whether an unraisable error is what a failed Orbax read leaves behind.

  When one array read fails, Orbax closes its event loop with the other reads
  still in flight: each later reports its coroutine, never awaited, or
  "Event loop is closed" from TensorStore's completion callback.
  """
  if isinstance(unraisable.exc_value, RuntimeError):
    return str(unraisable.exc_value) == "Event loop is closed"
  code = getattr(unraisable.object, "cr_code", None)
  return code is not None and "orbax" in code.co_filename


class _DropFailedReadTasks(python_logging.Filter):
  """asyncio's "Task/Future exception was never retrieved" for the reads a failure abandoned."""

  def filter(self, record) -> bool:
    message = record.getMessage()
    return not ("exception was never retrieved" in message
                and ("orbax" in message or "tensorstore" in message))


@contextlib.contextmanager
def _orbax_errors_raised_not_logged():
  """Orbax logs a corrupt file at ERROR before raising; the raised error is reported instead.

  Without this a corrupt checkpoint printed Orbax's log lines ahead of
  jaxlearn's one-line message, which says the same and what to do. The
  tracebacks its abandoned reads report (from other threads, while the
  message prints or the process exits) are dropped too; after a failure
  those filters stay, as the reports keep arriving once the restore is over.
  """
  drop = _DropOrbaxErrors()
  logger = python_logging.getLogger("absl")
  logger.addFilter(drop)
  abandoned_tasks = _DropFailedReadTasks()
  asyncio_logger = python_logging.getLogger("asyncio")
  asyncio_logger.addFilter(abandoned_tasks)
  previous_hook = sys.unraisablehook

  def quiet_leftovers(unraisable):
    if not _is_failed_read_leftover(unraisable):
      previous_hook(unraisable)

  sys.unraisablehook = quiet_leftovers
  try:
    yield
    asyncio_logger.removeFilter(abandoned_tasks)
    if sys.unraisablehook is quiet_leftovers:
      sys.unraisablehook = previous_hook
  finally:
    logger.removeFilter(drop)


def _restore(manager, state: TrainState) -> tuple[TrainState, dict | None]:
  with _orbax_errors_raised_not_logged():
    return _restore_logged(manager, state)


def _restore_logged(manager, state: TrainState) -> tuple[TrainState, dict | None]:
  step = manager.latest_step()
  if step is None:
    return state, None
  where = os.path.join(str(manager.directory), str(step))
  target = state.checkpoint_tree()
  try:
    stored = manager.item_metadata(step)["state"]
  except Exception as e:  # Orbax raises several kinds for unreadable metadata.
    raise _corrupt(where, e) from e
  _check_matches(stored, target, where)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()))
  except Exception as e:
    raise _corrupt(where, e) from e
  _verify(str(manager.directory), manager, step, restored["state"])
  return state.replace(**restored["state"]), restored["progress"]


def load_best_arrays(source: str, what: str = "") -> dict:
  """The arrays of the best checkpoint of the run in `source`, as stored (nested dicts).

  `source` is a run's workdir, or a checkpoint series such as WORKDIR/checkpoints/best.
  Reads without a model to restore into, so nothing but the files is needed.
  """
  source = os.path.abspath(source)
  best = RunDir(source).series("best")
  directory = best if os.path.isdir(best) else source
  steps = [int(n) for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []
  if not steps:
    raise CheckpointError(f"No checkpoint found in {source}{what}; pass a finished run's "
                          "workdir or its checkpoints/best directory.")
  manager = _manager(directory, max_to_keep=1)
  step = manager.latest_step()
  try:
    with _orbax_errors_raised_not_logged():
      # Onto this process's first device, whatever devices and processes wrote it.
      device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
      abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                              manager.item_metadata(step)["state"])
      stored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))
    _verify(directory, manager, step, stored["state"])
  except CheckpointError:
    raise
  except Exception as e:
    raise _corrupt(os.path.join(directory, str(step)), e) from e
  finally:
    manager.close()
  return stored["state"]


def load_matching_params(source: str, params, model_state=None, include: tuple = ()):
  """`params` (and `model_state`) with each array whose path and shape match `source`'s.

  For transfer learning: `source` is another run's workdir (or a checkpoint
  series such as WORKDIR/checkpoints/best), read from its best checkpoint; the
  rest (say, a classifier head of another size) keep their fresh
  initialisation. Model state (batch-norm statistics) of the copied layers comes
  along. `include` (regular expressions over paths) limits what is copied, e.g.
  `("conv.*",)` keeps a fresh head of the same size. Returns (params,
  model_state, names copied, names kept).
  """
  stored = load_best_arrays(source, " (config.init.from_checkpoint)")
  copied, kept = [], []
  params = _copy_matching(stored["params"], params, include, copied, kept)
  if model_state is not None:
    model_state = _copy_matching(stored.get("model_state", {}), model_state, include, [], [])
  logging.info("Copied %d parameter arrays from %s%s; %d keep their init%s.", len(copied),
               source, f" (config.init.from_checkpoint_include={','.join(include)})"
               if include else "", len(kept), f" ({', '.join(kept)})" if kept else "")
  return params, model_state, copied, kept


def _copy_matching(stored, tree, include, copied: list, kept: list):
  flat, _ = jax.tree_util.tree_flatten_with_path(stored)
  source = {path_name(path): leaf for path, leaf in flat}
  wanted = lambda name: not include or matches(name, include)

  def take(path, leaf):
    name = path_name(path)
    if wanted(name) and name in source and source[name].shape == leaf.shape:
      copied.append(name)
      return jax.numpy.asarray(source[name], leaf.dtype)
    kept.append(name)
    return leaf

  return jax.tree_util.tree_map_with_path(take, tree)


def _shapes_by_path(tree) -> dict[str, tuple]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {path_name(path): tuple(leaf.shape) for path, leaf in flat}


def _check_matches(stored, target, where: str) -> None:
  """Raises a CheckpointError listing how the checkpoint and the model differ."""
  have, want = _shapes_by_path(stored), _shapes_by_path(target)
  params_first = lambda paths: sorted(paths, key=lambda p: (not p.startswith("params/"), p))
  problems = [f"{p} is {have[p]} in the checkpoint but {want[p]} in the model"
              for p in params_first(have.keys() & want.keys()) if have[p] != want[p]]
  problems += [f"{p} is missing from the checkpoint"
               for p in params_first(want.keys() - have.keys())]
  problems += [f"{p} is in the checkpoint but not in the model"
               for p in params_first(have.keys() - want.keys())]
  if problems:
    shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4
                                       else "")
    raise CheckpointError(
        f"The checkpoint {where} does not match the configured model and optimizer: {shown}. "
        "It was written with another config (the workdir's config.json has it). Use a new "
        "--workdir for this config, or rerun with the config the checkpoint was written with. "
        "Nothing was changed in the workdir.")


def _corrupt(where: str, error: Exception) -> CheckpointError:
  # The first line of the reader's error: TensorStore's run to dozens of lines.
  detail = (str(error).strip().splitlines() or [""])[0].split(" See full TensorStore")[0][:300]
  return CheckpointError(
      f"The checkpoint {where} could not be read ({type(error).__name__}: {detail}); it is "
      "corrupt or incomplete. Move that step directory aside to resume from the one before it, "
      "or use a new --workdir. Nothing was changed in the workdir.")
