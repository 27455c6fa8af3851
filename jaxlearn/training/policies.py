"""What happens after each epoch's validation: every policy of the loop, in one readable order.

1. The epoch is recorded (`progress`): its metrics, and whether it is the best so far.
2. Divergence (`divergence`): a loss far above its best or a classifier at
   chance, for `config.divergence.patience` epochs, stops the run.
3. Early stopping (`early_stopping`): no improvement for
   `config.early_stopping.patience` epochs stops it.
4. The best epoch so far is saved as the `best` checkpoint (with the record of
   1-3, so it says why the run stopped).
5. The plateau schedule (`plateau`, when `config.schedule.name = "plateau"`)
   lowers the learning rate.
The non-finite policy acts inside an epoch, on each window of steps (`nonfinite`).
"""

import dataclasses
from typing import Callable

from jaxlearn.training import divergence, early_stopping, plateau
from jaxlearn.training.progress import Progress, record_epoch


def after_validation(state, progress: Progress, epoch: int, train_metrics: dict,
                     val_metrics: dict, config, seconds: float, chance: float | None,
                     save_best: Callable[[object, dict], None]):
  """Applies the policies above; returns the state (with a lowered rate after a plateau).

  `save_best(state, progress_record)` keeps the best checkpoint. Sets
  `progress.stop_reason` when a policy stops the run; `chance` is the
  validation accuracy of always predicting the most common class (None: no classes).
  """
  is_best = record_epoch(progress, epoch, train_metrics, val_metrics, config, seconds)
  progress.stop_reason = (
      divergence.stop_reason(progress.history, chance, config)
      or early_stopping.stop_reason(progress.epochs_done, progress.best_epoch,
                                    progress.best_value, config))
  if is_best:
    save_best(state, dataclasses.asdict(progress))
  if config.schedule.name == "plateau":
    state, progress.plateau = plateau.after_validation(
        state, progress.plateau, val_metrics[config.monitor], config)
  return state
