"""Where metrics go: the log, TensorBoard event files, a JSON-lines file and a progress bar."""

import json
import math

from absl import logging
from tqdm.auto import tqdm

from jaxlearn.runs import tracking
from jaxlearn.runs.workdir import RunDir, json_safe


tensorboardX = tracking.import_tensorboardx()


class Reporter:
  """Writes each batch of scalars to the log, WORKDIR/tensorboard and WORKDIR/metrics.jsonl.

  The event files need no TensorFlow to read (`tensorboard --logdir WORKDIR`);
  the JSON lines are one `{"step", "split", <metric>: value}` object per write;
  with a W&B run (`runs.tracking.open_wandb`) every write goes there too.
  """

  def __init__(self, workdir: str | None, wandb: tracking.WandbRun | None = None):
    # None: writes nothing (a process other than the primary one).
    self._run_dir = RunDir(workdir) if workdir is not None else None
    self.wandb = wandb  # also writes there (config.logging.wandb_project)
    self._tensorboard = None  # Opened by the first write: a run that fails first leaves no file.
    self._jsonl = None

  @property
  def writes(self) -> bool:
    return self._run_dir is not None

  def write(self, step: int, split: str, scalars: dict[str, float], echo: bool = True) -> None:
    """Records `scalars`; `echo=False` keeps them out of the log (a progress bar shows them)."""
    if self._run_dir is None:
      return
    if echo:
      logging.info("step %d %s: %s", step, split,
                   ", ".join(f"{k}={_format(v)}" for k, v in scalars.items()))
    if self._jsonl is None:
      self._tensorboard = tensorboardX.SummaryWriter(self._run_dir.tensorboard)
      self._jsonl = open(self._run_dir.metrics, "a", encoding="utf-8")
    for name, value in scalars.items():
      self._tensorboard.add_scalar(f"{split}/{name}", value, step)
    self._jsonl.write(json.dumps(json_safe({"step": step, "split": split, **scalars})) + "\n")
    self._jsonl.flush()
    if self.wandb is not None:
      self.wandb.log(step, split, scalars)

  def close(self) -> None:
    """Closes the files (the W&B run is its opener's to finish)."""
    if self._jsonl is not None:
      self._tensorboard.close()
      self._jsonl.close()
      self._jsonl = None


def progress_bar(enabled: bool, total: int, initial: int, description: str):
  """A per-epoch bar; shown on terminals and notebooks, hidden in plain logs."""
  return tqdm(total=total, initial=initial, desc=description, unit="step", leave=False,
              disable=None if enabled else True, dynamic_ncols=True)


def _format(value: float) -> str:
  return f"{value:.4g}" if math.isfinite(value) else str(value)
