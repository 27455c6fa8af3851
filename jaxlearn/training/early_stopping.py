"""Which epoch is the best so far, and when to stop because validation no longer improves.

Both follow `config.monitor` (a validation metric) in `config.monitor_mode`
('max' or 'min'), with `config.early_stopping.min_delta` as the margin an
improvement must beat and `patience` epochs (0: never stop early).
"""


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
  """Whether `value` beats `best` (None: nothing yet) by more than `min_delta`."""
  if best is None:
    return True
  return value > best + min_delta if mode == "max" else value < best - min_delta


def stop_reason(epochs_done: int, best_epoch: int, best_value: float, config) -> str:
  """Why training should stop now (empty: it should not)."""
  patience = config.early_stopping.patience
  waited = epochs_done - best_epoch
  if not patience or waited < patience:
    return ""
  return (f"early stopping: val {config.monitor} has not improved by more than "
          f"{config.early_stopping.min_delta} for {waited} epochs (best "
          f"{best_value:.6g} at epoch {best_epoch})")
