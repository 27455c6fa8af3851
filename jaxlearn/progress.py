"""How far a run has got (saved with every checkpoint), and the summary it ends with."""

import dataclasses

from absl import logging

from jaxlearn import early_stopping
from jaxlearn.errors import ConfigError


@dataclasses.dataclass
class Progress:
  """Epochs done, the best validation value so far, per-epoch history; JSON with each checkpoint."""
  epochs_done: int = 0
  best_value: float | None = None
  best_epoch: int = 0
  train_seconds: float = 0.0
  history: list = dataclasses.field(default_factory=list)
  plateau: dict = dataclasses.field(default_factory=dict)  # see jaxlearn.plateau
  stop_reason: str = ""  # set once training has ended early


def record_epoch(progress: Progress, epoch: int, train_metrics: dict, val_metrics: dict, config,
                 seconds: float) -> bool:
  """Adds the epoch to `progress`; True if its validation metric is the best so far."""
  if config.monitor not in val_metrics:
    raise ConfigError(f"config.monitor={config.monitor!r} is not a validation metric; choose "
                      f"one of {sorted(val_metrics)}.")
  value = val_metrics[config.monitor]
  is_best = early_stopping.improved(value, progress.best_value, config.monitor_mode,
                                    config.early_stopping.min_delta)
  progress.epochs_done = epoch + 1
  progress.train_seconds += seconds
  progress.history.append({"epoch": epoch + 1, "seconds": seconds,
                           **{f"train_{k}": v for k, v in train_metrics.items()},
                           **{f"val_{k}": v for k, v in val_metrics.items()}})
  if is_best:
    progress.best_value, progress.best_epoch = value, epoch + 1
  progress.stop_reason = early_stopping.stop_reason(progress.epochs_done, progress.best_epoch,
                                                    progress.best_value, config)
  logging.info("Epoch %d: val %s=%.4f (best %.4f at epoch %d), %.1fs.", epoch + 1,
               config.monitor, value, progress.best_value, progress.best_epoch, seconds)
  return is_best


def make_summary(config, progress: Progress, test_metrics: dict) -> dict:
  """The run's summary.json: test metrics of the best checkpoint, its validation, the history."""
  best_val = next(h for h in progress.history if h["epoch"] == progress.best_epoch)
  return {
      **{f"test_{k}": v for k, v in test_metrics.items()},
      **{f"best_{k}": v for k, v in best_val.items() if k.startswith("val_")},
      "best_epoch": progress.best_epoch,
      "epochs_run": progress.epochs_done,
      "stop_reason": progress.stop_reason or f"completed config.num_epochs={config.num_epochs}",
      "train_seconds": progress.train_seconds,
      "history": progress.history,
      "config": config.to_dict(),
  }
