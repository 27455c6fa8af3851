"""How far a run has got (saved with every checkpoint), and the summary it ends with."""

import dataclasses

from absl import logging

from jaxlearn.errors import ConfigError
from jaxlearn.runs.workdir import RunDir
from jaxlearn.training import early_stopping


@dataclasses.dataclass
class Progress:
  """Epochs done, the best validation value so far, per-epoch history; JSON with each checkpoint."""
  epochs_done: int = 0
  best_value: float | None = None
  best_epoch: int = 0
  train_seconds: float = 0.0
  history: list = dataclasses.field(default_factory=list)
  plateau: dict = dataclasses.field(default_factory=dict)  # see jaxlearn.training.plateau
  stop_reason: str = ""  # set once training has ended early
  # The train metrics of an epoch stopped part-way (metric_values.to_record), for its resume.
  partial_epoch: list = dataclasses.field(default_factory=list)
  # Where the streamed data's iterator stood in that epoch (config.data.pipeline="grain").
  data_position: dict | None = None


def record_epoch(progress: Progress, epoch: int, train_metrics: dict, val_metrics: dict, config,
                 seconds: float) -> bool:
  """Adds the epoch to `progress` and logs its line; True if its validation metric is the
  best so far (by `config.monitor`, `config.monitor_mode` and early stopping's `min_delta`)."""
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
  logging.info("Epoch %d/%d: train %s | val %s | best val %s %s at epoch %d | %.1f s",
               epoch + 1, config.num_epochs, format_metrics(train_metrics, _EPOCH_TRAIN_METRICS),
               format_metrics(val_metrics), config.monitor,
               format_value(config.monitor, progress.best_value), progress.best_epoch, seconds)
  return is_best


# The training metrics an epoch's line shows (the step-health ones are in the logs/TensorBoard).
_EPOCH_TRAIN_METRICS = ("loss", "accuracy", "mse", "mae", "r2")
_FRACTIONS = ("accuracy", "roc_auc")


def format_value(name: str, value: float) -> str:
  """'99.30%' for accuracies and AUCs, four significant digits otherwise."""
  if name.endswith(_FRACTIONS):
    return f"{100 * value:.2f}%"
  return f"{value:.4g}"


def format_metrics(metrics: dict, names=None) -> str:
  """'loss 0.0412, accuracy 98.71%' for the metrics in `names` (default: all)."""
  shown = [k for k in metrics if names is None or k in names]
  return ", ".join(f"{k} {format_value(k, metrics[k])}" for k in shown)


def describe(summary: dict, workdir: str) -> str:
  """A finished run in a few lines: the test result, the best epoch, why it stopped, where
  things are."""
  run_dir = RunDir(workdir)
  test = {k[len("test_"):]: v for k, v in summary.items() if k.startswith("test_")}
  best_val = {k[len("best_val_"):]: v for k, v in summary.items() if k.startswith("best_val_")}
  return "\n".join([
      f"Test, best checkpoint: {format_metrics(test)}",
      f"Best epoch {summary['best_epoch']} of {summary['epochs_run']} run: val "
      f"{format_metrics(best_val)}",
      f"Stopped: {summary['stop_reason']}; {summary['train_seconds']:.1f} s of training",
      f"Best checkpoint: {run_dir.series('best')}; all figures: {run_dir.summary}; curves: "
      f"python -m jaxlearn.plot --workdir={workdir}",
  ])


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
