"""A run's workdir: the files it holds, the config it was made with, one process at a time.

`RunDir(workdir)` names every file and folder a run writes, so that the layout
is spelled out here alone:

  WORKDIR/config.json          the config the run was started with
  WORKDIR/preprocessing.json   what was fitted on the train split; the model's input
  WORKDIR/summary.json         test metrics of the best checkpoint, per-epoch history
  WORKDIR/checkpoints/{latest,best}/<step>/   Orbax checkpoints (jaxlearn.runs.checkpoint)
  WORKDIR/metrics.jsonl, WORKDIR/tensorboard/ every logged metric
  WORKDIR/train.log            the full log of the training command
  WORKDIR/evaluation/<split>/  what `python -m jaxlearn.evaluate` writes
  WORKDIR/curves.png           what `python -m jaxlearn.plot` draws
  WORKDIR/.lock                held by the process training in it

`claim(workdir, config)` checks, before anything in the workdir is written, that
the config describes the same run as the one saved there (WORKDIR/config.json;
a workdir without any checkpoint holds no run yet), and then locks the workdir
for this process. Fields that only extend or observe a
run (`MAY_CHANGE`) may differ; any other difference is refused, listing the fields.
"""

import contextlib
import dataclasses
import fcntl
import json
import math
import os

from jaxlearn.errors import WorkdirError

CHECKPOINT_SERIES = ("latest", "best")
# The held-out splits a finished run is evaluated on (WORKDIR/evaluation/<split>/).
EVALUATED_SPLITS = ("test", "val")


@dataclasses.dataclass(frozen=True)
class RunDir:
  """The paths of one workdir's files (see the module docstring)."""
  root: str

  def _path(self, *parts: str) -> str:
    return os.path.join(self.root, *parts)

  @property
  def config(self) -> str:
    return self._path("config.json")

  @property
  def preprocessing(self) -> str:
    return self._path("preprocessing.json")

  @property
  def summary(self) -> str:
    return self._path("summary.json")

  @property
  def model_summary(self) -> str:
    return self._path("model_summary.txt")

  @property
  def layer_stats(self) -> str:
    return self._path("layer_stats.jsonl")

  @property
  def diagnosis(self) -> str:
    return self._path("diagnosis.json")

  @property
  def visualize(self) -> str:
    return self._path("visualize")

  @property
  def checkpoints(self) -> str:
    return self._path("checkpoints")

  def series(self, name: str) -> str:
    """WORKDIR/checkpoints/<name>: the `latest` or `best` checkpoints."""
    return self._path("checkpoints", name)

  @property
  def metrics(self) -> str:
    return self._path("metrics.jsonl")

  @property
  def tensorboard(self) -> str:
    return self._path("tensorboard")

  @property
  def wandb(self) -> str:
    return self._path("wandb")

  @property
  def log(self) -> str:
    return self._path("train.log")

  @property
  def lock(self) -> str:
    return self._path(".lock")

  @property
  def curves(self) -> str:
    return self._path("curves.png")

  def evaluation(self, split: str) -> str:
    return self._path("evaluation", split)


def write_text(path: str, text: str) -> None:
  """`text` in `path`, written whole and renamed into place."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, value, indent: int = 2) -> None:
  """`value` as JSON in `path`, written whole and renamed into place (NaN/Inf as null)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(json_safe(value), f, indent=indent, default=str, allow_nan=False)
  os.replace(tmp, path)


def json_safe(value):
  """`value` with NaN/Inf floats as None (null), so every file jaxlearn writes is valid JSON."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  return value

# Fields that extend or observe a run, or say where things are, without changing what it
# computes; every other field (data, split, seed, preprocessing, task, loss, model,
# optimizer, schedule, augmentation, precision, ...) decides what the run is.
MAY_CHANGE = frozenset({
    "num_epochs", "early_stopping.patience", "early_stopping.min_delta", "log_every_steps",
    "steps_per_call", "progress_bar", "eval_batch_size", "cpu_kernels",
    "compilation_cache_dir", "data.dir", "data.mirror", "data.workers", "data.tfds_data_dir",
    "on_nonfinite", "max_consecutive_nonfinite", "sharding", "logging.wandb_project",
    "logging.wandb_group", "logging.layer_stats",
})


def saved_config(workdir: str) -> dict | None:
  """The config the workdir's run was started with, or None for a new workdir."""
  path = RunDir(workdir).config
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
  run_dir = RunDir(workdir)
  return any(name.isdigit() for series in CHECKPOINT_SERIES
             for name in _listdir(run_dir.series(series)))


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
        f"this config, or rerun with the workdir's own ({RunDir(workdir).config}); "
        f"only {', '.join(sorted(MAY_CHANGE))} may change between runs of one workdir. "
        "Nothing was changed in the workdir.")
  return saved


def training_process(workdir: str) -> str | None:
  """Who is training in `workdir` now ("process 123 on host"), or None if no one is.

  Asks the kernel for the lock a training run holds (`claim`), without waiting.
  """
  path = RunDir(workdir).lock
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
      return lock.read().strip() or "another process"
    fcntl.flock(lock, fcntl.LOCK_UN)
  return None


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
    lock = open(RunDir(workdir).lock, "a+", encoding="utf-8")
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
