"""Optimizers and learning-rate schedules from `config.optimizer` / `config.schedule`.

Both are optax objects. Schedules take PyTorch's argument names and units, so a
recipe written for `torch.optim.lr_scheduler` carries over with the same values.
"""

import math

import jax
import jax.numpy as jnp
import optax

from jaxlearn.errors import ConfigError


def decay_mask(params):
  """True for weight matrices and kernels; biases and norm scales (1-D) are not decayed."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def _with_l2(config, transform):
  """PyTorch's `weight_decay` for SGD/Adam/...: wd * param added to the gradient."""
  if not config.weight_decay:
    return transform
  return optax.chain(optax.add_decayed_weights(config.weight_decay, decay_mask), transform)


OPTIMIZERS = {
    "sgd": lambda c, lr: _with_l2(c, optax.sgd(lr, momentum=c.momentum or None,
                                               nesterov=c.nesterov)),
    "adam": lambda c, lr: _with_l2(c, optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps)),
    "adamw": lambda c, lr: optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps,
                                       weight_decay=c.weight_decay, mask=decay_mask),
    "rmsprop": lambda c, lr: _with_l2(c, optax.rmsprop(lr, eps=c.eps, momentum=c.momentum or None,
                                                       nesterov=c.nesterov)),
    "adagrad": lambda c, lr: _with_l2(c, optax.adagrad(lr, eps=c.eps)),
    "lion": lambda c, lr: optax.lion(lr, b1=c.b1, b2=c.b2, weight_decay=c.weight_decay,
                                     mask=decay_mask),
}


def make_optimizer(optimizer_config, schedule: optax.Schedule) -> optax.GradientTransformation:
  """Builds the optimizer with its learning rate read from `schedule` at every step.

  Gradient clipping (`clip_norm`, `clip_value`) runs before the optimizer, and
  `accumulate_steps` > 1 averages that many batches' gradients per update
  (`optax.MultiSteps`; `schedule` then counts updates, not batches). The learning
  rate is `schedule(update) * lr_scale`, both kept in the optimizer state
  (`optax.inject_hyperparams`): the step reports it from there and the plateau
  schedule changes `lr_scale` between epochs (`set_lr_scale`).

  Example:
    tx = make_optimizer(config.optimizer, optax.constant_schedule(1e-3))
  """
  c = optimizer_config
  if c.name not in OPTIMIZERS:
    raise ConfigError(f"Unknown optimizer {c.name!r} in config.optimizer.name; choose one of "
                      f"{sorted(OPTIMIZERS)}.")
  if c.accumulate_steps < 1:
    raise ConfigError(f"config.optimizer.accumulate_steps={c.accumulate_steps}; use 1 (no "
                      "accumulation) or more.")

  def build(learning_rate, lr_scale):
    clipping = []
    if c.clip_value:
      clipping.append(optax.clip(c.clip_value))
    if c.clip_norm:
      clipping.append(optax.clip_by_global_norm(c.clip_norm))
    return optax.chain(*clipping, OPTIMIZERS[c.name](c, learning_rate * lr_scale))

  tx = optax.inject_hyperparams(build)(learning_rate=schedule, lr_scale=1.0)
  if c.accumulate_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=c.accumulate_steps)
  return tx


def _hyperparams(opt_state) -> dict:
  while not hasattr(opt_state, "hyperparams"):
    opt_state = opt_state.inner_opt_state  # Under optax.MultiSteps.
  return opt_state.hyperparams


def learning_rate(opt_state) -> jax.Array:
  """The learning rate of the step that produced `opt_state`."""
  hyperparams = _hyperparams(opt_state)
  return hyperparams["learning_rate"] * hyperparams.get("lr_scale", 1.0)


def set_lr_scale(opt_state, scale: float):
  """`opt_state` with the learning rate's multiplier set to `scale` (same dtype and sharding)."""
  if hasattr(opt_state, "hyperparams"):
    old = opt_state.hyperparams["lr_scale"]
    new = old * 0 + scale  # Computed from `old`, so it keeps its dtype and placement.
    return opt_state._replace(hyperparams={**opt_state.hyperparams, "lr_scale": new})
  return opt_state._replace(inner_opt_state=set_lr_scale(opt_state.inner_opt_state, scale))


def applied_update(opt_state) -> jax.Array:
  """True when the step that produced `opt_state` changed the parameters.

  Always, except between the micro-batches of gradient accumulation.
  """
  if isinstance(opt_state, optax.MultiStepsState):
    return opt_state.mini_step == 0
  return jnp.bool_(True)


def _epoch(step, steps_per_epoch):
  """The epoch an optimizer step falls in: epoch-based PyTorch schedules change once per epoch."""
  return jnp.asarray(step) // steps_per_epoch


def _constant(c, base_lr, steps_per_epoch, total_steps):
  return optax.constant_schedule(base_lr)


def _step(c, base_lr, steps_per_epoch, total_steps):
  """StepLR(step_size, gamma): base * gamma ** (epoch // step_size)."""
  return lambda step: base_lr * c.gamma ** (_epoch(step, steps_per_epoch) // c.step_size)


def _multistep(c, base_lr, steps_per_epoch, total_steps):
  """MultiStepLR(milestones, gamma): base * gamma ** (milestones passed)."""
  milestones = jnp.asarray(sorted(c.milestones))

  def schedule(step):
    passed = jnp.searchsorted(milestones, _epoch(step, steps_per_epoch), side="right")
    return base_lr * c.gamma**passed

  return schedule


def _exponential(c, base_lr, steps_per_epoch, total_steps):
  """ExponentialLR(gamma): base * gamma ** epoch."""
  return lambda step: base_lr * c.gamma ** _epoch(step, steps_per_epoch)


def _cosine(c, base_lr, steps_per_epoch, total_steps):
  """CosineAnnealingLR(T_max, eta_min=min_lr); T_max defaults to the run's epochs.

  Past T_max the rate follows the cosine back up, as PyTorch's closed form does.
  """
  t_max = c.t_max or max(1, total_steps // steps_per_epoch)

  def schedule(step):
    epoch = _epoch(step, steps_per_epoch)
    return c.min_lr + (base_lr - c.min_lr) * (1 + jnp.cos(jnp.pi * epoch / t_max)) / 2

  return schedule


def _one_cycle(c, base_lr, steps_per_epoch, total_steps):
  """OneCycleLR(max_lr=base_lr, total_steps) with cosine annealing, per optimizer step."""
  initial = base_lr / c.div_factor
  final = initial / c.final_div_factor
  peak_step = float(c.pct_start * total_steps) - 1
  last_step = total_steps - 1

  def anneal(start, end, pct):
    return end + (start - end) / 2 * (1 + jnp.cos(jnp.pi * pct))

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = anneal(initial, base_lr, step / peak_step)
    cool = anneal(base_lr, final, (step - peak_step) / (last_step - peak_step))
    return jnp.where(step <= peak_step, warm, cool)

  return schedule


def _cyclic(c, base_lr, steps_per_epoch, total_steps):
  """CyclicLR(base_lr=c.base_lr, max_lr=base_lr, step_size_up, step_size_down), triangular."""
  up = c.step_size_up
  cycle_length = up + (c.step_size_down or up)

  def schedule(step):
    position = jnp.asarray(step, jnp.float32) % cycle_length
    rising = position / up
    falling = (cycle_length - position) / (cycle_length - up)
    return c.base_lr + (base_lr - c.base_lr) * jnp.where(position <= up, rising, falling)

  return schedule


def _lambda(c, base_lr, steps_per_epoch, total_steps):
  """LambdaLR (base * f(epoch)) or MultiplicativeLR (base * f(1) * ... * f(epoch)).

  `f` is any Python callable: it is tabulated for the run's epochs up front,
  so it never needs to be traceable by JAX.
  """
  if not callable(c.lr_lambda):
    raise ConfigError("config.schedule.name='lambda' needs config.schedule.lr_lambda, a "
                      "function of the epoch, e.g. `lambda epoch: 0.95 ** epoch` in the config "
                      "file.")
  num_epochs = max(1, -(-total_steps // steps_per_epoch))
  factors = [float(c.lr_lambda(epoch)) for epoch in range(num_epochs + 1)]
  if c.multiplicative:
    factors = [math.prod(factors[1:epoch + 1]) for epoch in range(num_epochs + 1)]
  table = base_lr * jnp.asarray(factors, jnp.float32)
  return lambda step: table[jnp.minimum(_epoch(step, steps_per_epoch), num_epochs)]


SCHEDULES = {
    "constant": _constant,
    "step": _step,
    "multistep": _multistep,
    "exponential": _exponential,
    "cosine": _cosine,
    "cyclic": _cyclic,
    "one_cycle": _one_cycle,
    "lambda": _lambda,
    # Constant here; `plateau_update` lowers `lr_scale` after each epoch's validation.
    "plateau": _constant,
}


def make_schedule(schedule_config, base_lr: float, steps_per_epoch: int,
                  total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the optimizer step.

  Args:
    schedule_config: `config.schedule`; `name` picks the schedule and
      `warmup_epochs` > 0 prepends a linear warm-up from 0 to `base_lr`.
    base_lr: the optimizer's `learning_rate`.
    steps_per_epoch: optimizer steps per epoch (epoch-based schedules step once
      per epoch, like PyTorch's `scheduler.step()` at the end of each epoch).
    total_steps: optimizer steps in the whole run.

  Returns:
    An optax schedule.

  Example:
    schedule = make_schedule(config.schedule, 1e-3, steps_per_epoch=421, total_steps=4210)
  """
  name = schedule_config.name
  if name not in SCHEDULES:
    raise ConfigError(f"Unknown schedule {name!r} in config.schedule.name; choose one of "
                      f"{sorted(SCHEDULES)}.")
  warmup_steps = int(math.ceil(schedule_config.warmup_epochs * steps_per_epoch))
  main = SCHEDULES[name](schedule_config, base_lr, steps_per_epoch, total_steps - warmup_steps)
  if not warmup_steps:
    return main
  warmup = optax.linear_schedule(0.0, base_lr, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def plateau_update(plateau: dict, value: float, schedule_config, mode: str,
                   base_lr: float) -> dict:
  """ReduceLROnPlateau after one epoch's validation `value`; returns the new plateau record.

  The record ({"best", "bad_epochs", "cooldown_left", "lr_scale"}, empty at the
  start) lives in the run's progress so a resumed run carries on where it stopped.
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
