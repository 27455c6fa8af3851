"""Stopping a run whose training has diverged, though no loss became NaN.

A learning rate that is too high can throw a model out of its basin: the
training loss climbs far above its best and a classifier's validation accuracy
falls to what always predicting the most common class gives, and stays there.
The best checkpoint is from before that, so the run would end "completed" with
a result far from what the config can do. After `config.divergence.patience`
such epochs in a row the run stops with `stop_reason` "diverged: ..." and the
command line exits 2, suggesting a lower learning rate.
"""

import numpy as np

from jaxlearn.errors import DivergedError


def chance_accuracy(task_name: str, val_targets) -> float | None:
  """The validation accuracy of always predicting the most common class (None: no classes)."""
  if task_name not in ("classification", "binary"):
    return None
  _, counts = np.unique(np.asarray(val_targets).reshape(len(val_targets), -1)[:, 0],
                        return_counts=True)
  return float(counts.max() / counts.sum())


def epoch_reason(history: list[dict], chance: float | None, loss_factor: float) -> str:
  """Why the last epoch of `history` looks diverged (empty: it does not)."""
  *before, now = history
  reasons = []
  if before:
    # Above where training started too, so that noise on a near-zero loss is no divergence.
    best = min(before, key=lambda h: h["train_loss"])
    first = history[0]["train_loss"]
    if now["train_loss"] > max(loss_factor * best["train_loss"], first):
      reasons.append(f"train loss {now['train_loss']:.4g}, above {loss_factor:g}x its best "
                     f"{best['train_loss']:.4g} (epoch {best['epoch']}) and its first epoch's "
                     f"{first:.4g}")
  if chance is not None and "val_accuracy" in now:
    best_accuracy = max(h.get("val_accuracy", 0.0) for h in history)
    if now["val_accuracy"] <= chance + 0.02 and best_accuracy >= chance + 0.1:
      reasons.append(f"val accuracy {now['val_accuracy']:.4f}, at chance ({chance:.4f}: always "
                     f"the most common class) after {best_accuracy:.4f}")
  return "; ".join(reasons)


def stop_reason(history: list[dict], chance: float | None, config) -> str:
  """'diverged: ...' once `config.divergence.patience` epochs in a row look diverged."""
  patience = config.divergence.patience
  if not patience or len(history) < patience:
    return ""
  reasons = [epoch_reason(history[:i + 1], chance, config.divergence.loss_factor)
             for i in range(len(history) - patience, len(history))]
  if not all(reasons):
    return ""
  return f"diverged: {reasons[-1]}, for {patience} epochs in a row"


def error(summary: dict, config) -> DivergedError:
  """The message for a diverged run, once its best checkpoint has been tested."""
  lower = config.optimizer.learning_rate / 3
  tested = ", ".join(f"{k[len('test_'):]} {v:.4g}" for k, v in summary.items()
                     if k.startswith("test_"))
  return DivergedError(
      f"Training {summary['stop_reason']} (stopped after epoch {summary['epochs_run']}). The "
      f"best checkpoint, from epoch {summary['best_epoch']}, was tested ({tested}; see "
      "summary.json), but the run did not train as this config can. Rerun with a lower "
      f"learning rate, e.g. --config.optimizer.learning_rate={lower:.3g}, or a warm-up "
      "(config.schedule.warmup_epochs) or clipping (config.optimizer.clip_norm), in a new "
      "--workdir. config.divergence.patience=0 turns this check off.")
