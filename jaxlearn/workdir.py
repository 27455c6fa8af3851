"""A run's workdir holds one run: the config it was made with, and one process at a time.

`claim(workdir, config)` checks, before anything in the workdir is written, that
the config describes the same run as the one saved there (WORKDIR/config.json;
a workdir without any checkpoint holds no run yet), and then locks the workdir
for this process. Fields that only extend or observe a
run (`MAY_CHANGE`) may differ; any other difference is refused, listing the fields.
"""

import contextlib
import fcntl
import json
import os

from jaxlearn.errors import WorkdirError

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
# Fields that extend or observe a run, or say where things are, without changing what it
# computes; every other field (data, split, seed, preprocessing, task, loss, model,
# optimizer, schedule, augmentation, precision, ...) decides what the run is.
MAY_CHANGE = frozenset({
    "num_epochs", "early_stopping.patience", "early_stopping.min_delta", "log_every_steps",
    "steps_per_call", "progress_bar", "eval_batch_size", "cpu_kernels",
    "compilation_cache_dir", "data.dir", "data.mirror", "data.workers", "data.tfds_data_dir",
    "on_nonfinite", "max_consecutive_nonfinite", "sharding",
})


def saved_config(workdir: str) -> dict | None:
  """The config the workdir's run was started with, or None for a new workdir."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirError(f"{path} cannot be read ({e}); it records which run this workdir holds. "
                       "Restore it, or use a new --workdir.") from e


def config_record(config) -> dict:
  """The config as WORKDIR/config.json holds it: JSON values, functions by their name."""
  return json.loads(json.dumps(config.to_dict(), default=_describe))


def _describe(value) -> str:
  if callable(value):  # e.g. schedule.lr_lambda: the same function in every process.
    return f"<function {getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}>"
  return str(value)


def differing_fields(saved: dict, config) -> list[str]:
  """Dotted names of the fields, outside MAY_CHANGE, whose values differ from `saved`.

  A field that `saved` lacks (a workdir written before jaxlearn had it) counts as
  its default: the run it records did not use the feature.
  """
  from jaxlearn.config import default_config  # pylint: disable=import-outside-toplevel
  defaults = _flatten(config_record(default_config()))
  old, new = _flatten(saved), _flatten(config_record(config))
  old = {**{k: v for k, v in defaults.items() if k not in old}, **old}
  return sorted(k for k in old.keys() | new.keys()
                if k not in MAY_CHANGE and old.get(k, "<unset>") != new.get(k, "<unset>"))


def has_checkpoint(workdir: str) -> bool:
  """Whether any checkpoint was saved in `workdir` (without one there is no run to protect)."""
  root = os.path.join(workdir, "checkpoints")
  return any(name.isdigit() for series in ("latest", "best")
             for name in _listdir(os.path.join(root, series)))


def _listdir(path: str) -> list[str]:
  return os.listdir(path) if os.path.isdir(path) else []


def check_same_run(workdir: str, config) -> dict | None:
  """Raises WorkdirError if the workdir holds a run of another config; returns the saved one."""
  saved = saved_config(workdir)
  if saved is None or not has_checkpoint(workdir):
    return saved
  differing = differing_fields(saved, config)
  if differing:
    old, new = _flatten(saved), _flatten(config_record(config))
    shown = "; ".join(f"{k}: {old.get(k, '<unset>')!r} there, {new.get(k, '<unset>')!r} now"
                      for k in differing[:6])
    more = f"; and {len(differing) - 6} more" if len(differing) > 6 else ""
    raise WorkdirError(
        f"{workdir} holds a run of another config ({shown}{more}). Use a new --workdir for "
        f"this config, or rerun with the workdir's own ({os.path.join(workdir, CONFIG_FILE)}); "
        f"only {', '.join(sorted(MAY_CHANGE))} may change between runs of one workdir. "
        "Nothing was changed in the workdir.")
  return saved


@contextlib.contextmanager
def claim(workdir: str, config, primary: bool = True):
  """Checks the workdir holds this config's run, then holds its lock; yields the saved config.

  The lock is an advisory `flock` on WORKDIR/.lock: the kernel drops it when the
  process ends, however it ends, so a killed run never blocks the next one. Of a
  run's several processes only the primary one takes it.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir} is a file, not a directory; pass a directory "
                       "(it is created if missing).")
  saved = check_same_run(workdir, config)
  if not primary:
    yield saved
    return
  try:
    os.makedirs(workdir, exist_ok=True)
    lock = open(os.path.join(workdir, LOCK_FILE), "a+", encoding="utf-8")
  except OSError as e:
    raise WorkdirError(f"Cannot write to --workdir={workdir} ({e.strerror}); pass a directory "
                       "you can write to.") from e
  with lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
      lock.seek(0)
      holder = lock.read().strip() or "another process"
      raise WorkdirError(f"{workdir} is in use by a run that is still going ({holder}). Wait "
                         "for it to finish, stop it, or use another --workdir.") from e
    lock.seek(0)
    lock.truncate()
    lock.write(f"process {os.getpid()} on {os.uname().nodename}")
    lock.flush()
    try:
      yield saved
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, name + "."))
    else:
      flat[name] = value
  return flat
