"""Optimizers and learning-rate schedules from `config.optimizer` / `config.schedule`.

Both are optax objects. Schedules take PyTorch's argument names and units, so a
recipe written for `torch.optim.lr_scheduler` carries over with the same values.
"""

import math

import jax
import jax.numpy as jnp
import optax

from jaxlearn.core import finetune, paths, prune
from jaxlearn.errors import ConfigError


def decay_mask(params):
  """True for weight matrices and kernels; biases and norm scales (1-D) are not decayed."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


# PyTorch's defaults (torch.optim; Lion from its paper), taken where config.optimizer leaves
# a field unset (None).
DEFAULTS = {
    "sgd": {"momentum": 0.0, "weight_decay": 0.0},
    "adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0},
    "adagrad": {"eps": 1e-10, "weight_decay": 0.0},
    "lion": {"b1": 0.9, "b2": 0.99, "weight_decay": 0.0},
}


def settings_of(config) -> dict:
  """The optimizer's settings: config.optimizer's set fields over its PyTorch defaults."""
  return {k: (default if config.get(k) is None else config[k])
          for k, default in DEFAULTS[config.name].items()}


def _with_l2(weight_decay: float, transform):
  """PyTorch's `weight_decay` for SGD/Adam/...: wd * param added to the gradient.

  A traced `weight_decay` (a vectorised sweep's per-trial value) is always
  added; its state has no arrays, so the optimizer state's arrays are the same.
  """
  if isinstance(weight_decay, (int, float)) and not weight_decay:
    return transform
  return optax.chain(optax.add_decayed_weights(weight_decay, decay_mask), transform)


def scale_by_sum_of_squares(eps: float) -> optax.GradientTransformation:
  """Adagrad's scaling as in `torch.optim.Adagrad`: g / (sqrt(sum of g^2 so far) + eps).

  `optax.scale_by_rss` starts the sum at 0.1 by default and puts eps inside the root.
  """

  def init(params):
    return optax.ScaleByRssState(sum_of_squares=optax.tree.zeros_like(params))

  def update(updates, state, params=None):
    del params
    sums = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
    updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, sums)
    return updates, optax.ScaleByRssState(sum_of_squares=sums)

  return optax.GradientTransformation(init, update)


def _momentum(momentum: float, nesterov: bool) -> list:
  return [optax.trace(decay=momentum, nesterov=nesterov)] if momentum else []


def _sgd(c, s, lr):
  return _with_l2(s["weight_decay"], optax.chain(*_momentum(s["momentum"], c.nesterov),
                                                 optax.scale_by_learning_rate(lr)))


def _rmsprop(c, s, lr):
  # torch.optim.RMSprop: eps outside the root, momentum on the scaled gradient before lr.
  return _with_l2(s["weight_decay"], optax.chain(
      optax.scale_by_rms(decay=s["alpha"], eps=s["eps"], eps_in_sqrt=False),
      *_momentum(s["momentum"], c.nesterov), optax.scale_by_learning_rate(lr)))


def _adagrad(c, s, lr):
  return _with_l2(s["weight_decay"], optax.chain(scale_by_sum_of_squares(s["eps"]),
                                                 optax.scale_by_learning_rate(lr)))


OPTIMIZERS = {
    "sgd": _sgd,
    "adam": lambda c, s, lr: _with_l2(s["weight_decay"],
                                      optax.adam(lr, b1=s["b1"], b2=s["b2"], eps=s["eps"])),
    "adamw": lambda c, s, lr: optax.adamw(lr, b1=s["b1"], b2=s["b2"], eps=s["eps"],
                                          weight_decay=s["weight_decay"], mask=decay_mask),
    "rmsprop": _rmsprop,
    "adagrad": _adagrad,
    "lion": lambda c, s, lr: optax.lion(lr, b1=s["b1"], b2=s["b2"],
                                        weight_decay=s["weight_decay"], mask=decay_mask),
}


def make_optimizer(optimizer_config, schedule: optax.Schedule,
                   freeze: tuple[str, ...] = (), prune_config=None,
                   updates_per_epoch: int = 1, *,
                   settings: dict | None = None) -> optax.GradientTransformation:
  """Builds the optimizer with its learning rate read from `schedule` at every step.

  Gradient clipping (`clip_norm`, `clip_value`) runs before the optimizer, and
  `accumulate_steps` > 1 averages that many batches' gradients per update
  (`optax.MultiSteps`; `schedule` then counts updates, not batches). The learning
  rate is `schedule(update) * lr_scale`, both kept in the optimizer state
  (`optax.inject_hyperparams`): the step reports it from there and the plateau
  schedule changes `lr_scale` between epochs (`jaxlearn.training.plateau`).
  Parameters matching a `freeze` pattern get no update and no optimizer state;
  `lr_multipliers` scales the others' updates (see `jaxlearn.core.finetune`).
  `prune_config` (config.prune) zeroes weights by magnitude after each update
  (`jaxlearn.core.prune`), its schedule counting `updates_per_epoch` per epoch.
  `settings` replaces some of the optimizer's own settings (e.g. a traced
  `weight_decay`, see `jaxlearn.sweeps.vectorised`).

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
  settings = {**settings_of(c), **(settings or {})}
  multipliers = finetune.parse_multipliers(c.get("lr_multipliers", ""))

  def build(learning_rate, lr_scale):
    clipping = []
    if c.clip_value:
      clipping.append(optax.clip(c.clip_value))
    if c.clip_norm:
      clipping.append(optax.clip_by_global_norm(c.clip_norm))
    scaling = [finetune.scale_by_path(multipliers)] if multipliers else []
    pruning = []
    if prune_config is not None and prune_config.sparsity > 0:
      pruning.append(prune.magnitude_pruning(
          prune_config.sparsity, prune_config.epochs * updates_per_epoch,
          paths.parse_patterns(prune_config.params, "config.prune.params"),
          prune_config.scope))
    return finetune.with_frozen(
        optax.chain(*clipping, OPTIMIZERS[c.name](c, settings, learning_rate * lr_scale),
                    *scaling, *pruning), list(freeze))

  tx = optax.inject_hyperparams(build)(learning_rate=schedule, lr_scale=1.0)
  if c.accumulate_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=c.accumulate_steps)
  return tx


def hyperparams(opt_state) -> dict:
  """The values `make_optimizer` injects (`learning_rate`, `lr_scale`) in `opt_state`."""
  while not hasattr(opt_state, "hyperparams"):
    opt_state = opt_state.inner_opt_state  # Under optax.MultiSteps.
  return opt_state.hyperparams


def with_hyperparams(opt_state, **values):
  """`opt_state` with some injected hyperparameters replaced (e.g. `lr_scale=0.1`)."""
  if hasattr(opt_state, "hyperparams"):
    return opt_state._replace(hyperparams={**opt_state.hyperparams, **values})
  return opt_state._replace(inner_opt_state=with_hyperparams(opt_state.inner_opt_state,
                                                             **values))


def learning_rate(opt_state) -> jax.Array:
  """The learning rate of the step that produced `opt_state`."""
  injected = hyperparams(opt_state)
  return injected["learning_rate"] * injected.get("lr_scale", 1.0)


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
    # Constant here; `jaxlearn.training.plateau` lowers `lr_scale` after each epoch's validation.
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
