"""The plateau schedule (ReduceLROnPlateau): a lower learning rate when validation stalls.

Its record ({"best", "bad_epochs", "cooldown_left", "lr_scale"}, empty at the
start) lives in the run's progress, so a resumed run carries on where it
stopped; the rate's multiplier `lr_scale` lives in the optimizer state
(`jaxlearn.core.optim.make_optimizer`), so changing it never recompiles the step.
"""

from absl import logging

from jaxlearn.core import optim
from jaxlearn.errors import ConfigError


def set_lr_scale(opt_state, scale: float):
  """`opt_state` with the learning rate's multiplier set to `scale` (same dtype and sharding)."""
  old = optim.hyperparams(opt_state)["lr_scale"]
  # Computed from `old`, so it keeps its dtype and placement.
  return optim.with_hyperparams(opt_state, lr_scale=old * 0 + scale)


def update(plateau: dict, value: float, schedule_config, mode: str, base_lr: float) -> dict:
  """ReduceLROnPlateau after one epoch's validation `value`; returns the new plateau record.

  Semantics are PyTorch's: an improvement beats `best` by more than `threshold`
  (relative or absolute); after more than `patience` epochs without one the rate
  is multiplied by `factor` (not below `min_lr`) and `cooldown` epochs follow.
  """
  c = schedule_config
  best = plateau.get("best")
  bad_epochs = plateau.get("bad_epochs", 0)
  cooldown_left = plateau.get("cooldown_left", 0)
  lr_scale = plateau.get("lr_scale", 1.0)
  if best is None or _beats(value, best, mode, c.threshold, c.threshold_mode):
    best, bad_epochs = value, 0
  else:
    bad_epochs += 1
  if cooldown_left > 0:
    cooldown_left -= 1
    bad_epochs = 0
  if bad_epochs > c.patience:
    lr_scale = max(lr_scale * c.factor, c.min_lr / base_lr)
    cooldown_left, bad_epochs = c.cooldown, 0
  return {"best": best, "bad_epochs": bad_epochs, "cooldown_left": cooldown_left,
          "lr_scale": lr_scale}


def _beats(value: float, best: float, mode: str, threshold: float, threshold_mode: str) -> bool:
  """PyTorch's test: rel compares with best * (1 -+ threshold), abs with best -+ threshold."""
  sign = -1 if mode == "min" else 1
  if threshold_mode == "rel":
    bar = best * (1 + sign * threshold)
  elif threshold_mode == "abs":
    bar = best + sign * threshold
  else:
    raise ConfigError(f"config.schedule.threshold_mode={threshold_mode!r}; use 'rel' or 'abs'.")
  return value < bar if mode == "min" else value > bar


def after_validation(state, record: dict, value: float, config) -> tuple:
  """The schedule's step after an epoch's validation `value`: (state, new record).

  The state's learning-rate multiplier is lowered when the record says so.
  """
  before = record.get("lr_scale", 1.0)
  record = update(record, value, config.schedule, config.monitor_mode,
                  config.optimizer.learning_rate)
  scale = record["lr_scale"]
  if scale == before:
    return state, record
  logging.info("val %s has plateaued: learning rate lowered to %.3g.", config.monitor,
               scale * config.optimizer.learning_rate)
  return state.replace(opt_state=set_lr_scale(state.opt_state, scale)), record
