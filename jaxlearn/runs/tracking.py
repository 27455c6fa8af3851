"""A run seen from outside its workdir: TensorBoard's hyper-parameter view and Weights & Biases.

`write_hparams` puts every run's config and results into TensorBoard's HParams
tab (WORKDIR/tensorboard/hparams), so `tensorboard --logdir SWEEP_DIR` compares a
sweep's trials there. `open_wandb` starts (or, for a resumed run, continues) the
run's W&B run when `config.logging.wandb_project` is set: one W&B run per
workdir, its id derived from the workdir's path, so a resumed run, its
evaluation and the trials of one sweep (a W&B group) all land in one place.
"""

import hashlib
import json
import os
import shutil
import sys

from jaxlearn.errors import ConfigError
from jaxlearn.runs.workdir import RunDir, config_record, json_safe


def import_tensorboardx():
  """tensorboardX, imported without PyTorch unless PyTorch is already loaded.

  tensorboardX imports PyTorch whenever it is installed (a second or more of
  start-up), only so that it can also accept torch tensors; jaxlearn writes floats.
  """
  if "torch" in sys.modules:
    import tensorboardX  # pylint: disable=import-outside-toplevel
    return tensorboardX
  sys.modules["torch"] = None  # `import torch` now raises ImportError.
  try:
    import tensorboardX  # pylint: disable=import-outside-toplevel
  finally:
    del sys.modules["torch"]
  return tensorboardX


def hparams(config) -> dict:
  """Every config field as TensorBoard's HParams view takes it: a number, bool or string."""
  flat = {}

  def walk(tree, prefix):
    for key, value in tree.items():
      if isinstance(value, dict):
        walk(value, f"{prefix}{key}.")
      elif isinstance(value, (bool, int, float, str)):
        flat[prefix + key] = value
      else:
        flat[prefix + key] = json.dumps(value)

  walk(config_record(config), "")
  return flat


def result_metrics(summary: dict) -> dict[str, float]:
  """The summary's numbers that compare runs: test metrics, best validation, best epoch."""
  return {k: float(v) for k, v in json_safe(summary).items()
          if k.startswith(("test_", "best_val_")) and isinstance(v, (int, float))}


def write_hparams(workdir: str, config, summary: dict) -> None:
  """The run's config and results in WORKDIR/tensorboard/hparams (replacing an earlier write)."""
  directory = os.path.join(RunDir(workdir).tensorboard, "hparams")
  shutil.rmtree(directory, ignore_errors=True)
  tensorboardx = import_tensorboardx()
  metrics = result_metrics(summary)
  # What SummaryWriter.add_hparams writes, without its extra events file in the parent folder.
  with tensorboardx.SummaryWriter(logdir=directory) as writer:
    for proto in tensorboardx.summary.hparams(hparams(config), metrics):
      writer.file_writer.add_summary(proto)
    for name, value in metrics.items():
      writer.add_scalar(name, value)


def _wandb_setting(config, name: str) -> str:
  """config.logging.<name>, '' in a workdir's config saved before jaxlearn had the field."""
  logging_config = config.get("logging") or {}
  return logging_config.get(name, "") or ""


def check_wandb(config) -> None:
  """Raises a ConfigError before training when W&B is asked for but not installed."""
  if _wandb_setting(config, "wandb_project"):
    try:
      import wandb  # pylint: disable=import-outside-toplevel,unused-import
    except ImportError as e:
      raise ConfigError(f"config.logging.wandb_project={_wandb_setting(config, 'wandb_project')!r} needs "
                        "Weights & Biases: pip install 'jaxlearn[wandb]', or leave the field "
                        "empty.") from e


def wandb_id(workdir: str) -> str:
  """The W&B run id of a workdir: the same for every process and rerun that uses it."""
  return hashlib.sha1(os.path.abspath(workdir).encode()).hexdigest()[:16]


class WandbRun:
  """One workdir's W&B run: metrics by step, the test result in its summary, figures."""

  def __init__(self, run):
    self._run = run

  def log(self, step: int, split: str, scalars: dict[str, float]) -> None:
    if split == "test":  # Of the best checkpoint, at an earlier step: a result, not a point.
      self._run.summary.update({f"test/{k}": v for k, v in scalars.items()})
      return
    self._run.log({f"{split}/{k}": v for k, v in scalars.items()}, step=step)

  def images(self, paths: list[str], prefix: str) -> None:
    import wandb  # pylint: disable=import-outside-toplevel
    shown = [p for p in paths if p.endswith(".png")]
    if shown:
      self._run.log({f"{prefix}/{os.path.splitext(os.path.basename(p))[0]}": wandb.Image(p)
                     for p in shown})

  def summarise(self, summary: dict) -> None:
    self._run.summary.update(result_metrics(summary))

  def finish(self) -> None:
    """Ends the W&B run (once; later calls do nothing)."""
    if self._run is not None:
      self._run.finish()
      self._run = None


def open_wandb(config, workdir: str) -> WandbRun | None:
  """The workdir's W&B run (continued if it exists), or None without a wandb_project.

  `config` is a ConfigDict or the dict of WORKDIR/config.json.
  """
  project = _wandb_setting(config, "wandb_project")
  if not project:
    return None
  check_wandb(config)
  import wandb  # pylint: disable=import-outside-toplevel
  os.makedirs(RunDir(workdir).wandb, exist_ok=True)
  run = wandb.init(project=project, group=_wandb_setting(config, "wandb_group") or None,
                   name=os.path.basename(os.path.abspath(workdir)), id=wandb_id(workdir),
                   resume="allow", dir=workdir, config=config_record(config),
                   reinit="create_new")
  return WandbRun(run)
