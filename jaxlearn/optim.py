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

  The learning rate is kept in the optimizer state (`optax.inject_hyperparams`),
  which is how the training step reports it.

  Example:
    tx = make_optimizer(config.optimizer, optax.constant_schedule(1e-3))
  """
  name = optimizer_config.name
  if name not in OPTIMIZERS:
    raise ConfigError(f"Unknown optimizer {name!r} in config.optimizer.name; choose one of "
                      f"{sorted(OPTIMIZERS)}.")
  build = OPTIMIZERS[name]
  return optax.inject_hyperparams(lambda learning_rate: build(optimizer_config, learning_rate))(
      learning_rate=schedule)


def learning_rate(opt_state) -> jax.Array:
  """The learning rate of the step that produced `opt_state`."""
  return opt_state.hyperparams["learning_rate"]


def _constant(c, base_lr, steps_per_epoch, total_steps):
  return optax.constant_schedule(base_lr)


def _cosine(c, base_lr, steps_per_epoch, total_steps):
  """CosineAnnealingLR(T_max=all epochs, eta_min=min_lr), stepped once per epoch."""
  t_max = max(1, total_steps // steps_per_epoch)

  def schedule(step):
    epoch = jnp.minimum(step // steps_per_epoch, t_max)
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


SCHEDULES = {
    "constant": _constant,
    "cosine": _cosine,
    "one_cycle": _one_cycle,
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
