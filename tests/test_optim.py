"""Schedules, plateau, optimizers and clipping against hand-computed values and PyTorch."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlearn.config import default_config
from jaxlearn.core import optim
from jaxlearn.errors import ConfigError
from jaxlearn.training import plateau

BASE_LR = 0.1
SPE = 10  # optimizer steps per epoch


def _schedule(name, total_steps=100, **fields):
  config = default_config().schedule
  config.name = name
  for key, value in fields.items():
    config[key] = value
  return optim.make_schedule(config, BASE_LR, SPE, total_steps)


# (schedule, its settings, {optimizer step: learning rate}) worked out by hand from
# the torch.optim.lr_scheduler formulas; epoch = step // 10.
HAND_TABLE = [
    ("constant", {}, {0: 0.1, 99: 0.1}),
    ("step", {"step_size": 2, "gamma": 0.5}, {0: 0.1, 19: 0.1, 20: 0.05, 39: 0.05, 40: 0.025}),
    ("multistep", {"milestones": (2, 5), "gamma": 0.1},
     {0: 0.1, 19: 0.1, 20: 0.01, 49: 0.01, 50: 0.001, 99: 0.001}),
    ("exponential", {"gamma": 0.9}, {9: 0.1, 10: 0.09, 35: 0.1 * 0.9**3}),
    ("cosine", {"min_lr": 0.001}, {0: 0.1, 9: 0.1, 50: 0.0505, 59: 0.0505,
                                   90: 0.001 + 0.099 * (1 + math.cos(math.pi * 0.9)) / 2}),
    ("cosine", {"t_max": 4}, {20: 0.05, 40: 0.0, 60: 0.05}),
    ("one_cycle", {}, {0: 0.1 / 25, 29: 0.1, 99: 0.1 / 25 / 1e4,
                       14: 0.004 + (0.1 - 0.004) * (1 - math.cos(math.pi * 14 / 29)) / 2}),
    ("cyclic", {"base_lr": 0.01, "step_size_up": 4, "step_size_down": 6},
     {0: 0.01, 2: 0.055, 4: 0.1, 7: 0.055, 10: 0.01, 12: 0.055, 14: 0.1}),
    ("lambda", {"lr_lambda": lambda epoch: 0.5**epoch}, {0: 0.1, 9: 0.1, 30: 0.0125}),
    ("lambda", {"lr_lambda": lambda epoch: 0.9, "multiplicative": True},
     {0: 0.1, 10: 0.09, 35: 0.1 * 0.9**3}),
    ("plateau", {}, {0: 0.1, 99: 0.1}),
    # A 2-epoch linear warm-up from 0, then the schedule counts epochs from its end.
    ("constant", {"warmup_epochs": 2}, {0: 0.0, 10: 0.05, 20: 0.1, 99: 0.1}),
    ("step", {"warmup_epochs": 2, "step_size": 1, "gamma": 0.5},
     {5: 0.025, 20: 0.1, 29: 0.1, 30: 0.05, 40: 0.025}),
]


@pytest.mark.parametrize("name,fields,table", HAND_TABLE,
                         ids=[f"{row[0]}-{i}" for i, row in enumerate(HAND_TABLE)])
def test_schedule_matches_hand_computed_values(name, fields, table):
  schedule = jax.jit(_schedule(name, **fields))
  for step, expected in table.items():
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-9), step


def _torch_lrs(make_scheduler, num_updates, per_epoch):
  """The learning rate PyTorch uses at each optimizer step, stepping the scheduler as the seeds do."""
  torch = pytest.importorskip("torch")
  optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
  scheduler = make_scheduler(torch.optim.lr_scheduler, optimizer)
  lrs = []
  for step in range(num_updates):
    lrs.append(optimizer.param_groups[0]["lr"])
    optimizer.step()
    if not per_epoch or (step + 1) % SPE == 0:
      scheduler.step()
  return np.array(lrs)


TORCH_CASES = [
    ("step", {"step_size": 3, "gamma": 0.3}, True, lambda s, o: s.StepLR(o, 3, gamma=0.3)),
    ("multistep", {"milestones": (2, 4, 7), "gamma": 0.5}, True,
     lambda s, o: s.MultiStepLR(o, [2, 4, 7], gamma=0.5)),
    ("exponential", {"gamma": 0.8}, True, lambda s, o: s.ExponentialLR(o, 0.8)),
    ("cosine", {"min_lr": 1e-3}, True, lambda s, o: s.CosineAnnealingLR(o, 10, eta_min=1e-3)),
    ("one_cycle", {"pct_start": 0.25}, False,
     lambda s, o: s.OneCycleLR(o, BASE_LR, total_steps=100, pct_start=0.25,
                               cycle_momentum=False)),
    ("cyclic", {"base_lr": 1e-3, "step_size_up": 7, "step_size_down": 13}, False,
     lambda s, o: s.CyclicLR(o, 1e-3, BASE_LR, step_size_up=7, step_size_down=13,
                             cycle_momentum=False)),
    ("lambda", {"lr_lambda": lambda epoch: 1 / (1 + epoch)}, True,
     lambda s, o: s.LambdaLR(o, lambda epoch: 1 / (1 + epoch))),
    ("lambda", {"lr_lambda": lambda epoch: 0.7, "multiplicative": True}, True,
     lambda s, o: s.MultiplicativeLR(o, lambda epoch: 0.7)),
]


@pytest.mark.parametrize("name,fields,per_epoch,make_scheduler", TORCH_CASES,
                         ids=[row[0] for row in TORCH_CASES])
def test_schedule_matches_pytorch_at_every_step(name, fields, per_epoch, make_scheduler):
  expected = _torch_lrs(make_scheduler, 100, per_epoch)
  schedule = jax.jit(_schedule(name, **fields))
  ours = np.array([float(schedule(step)) for step in range(100)])
  # float32 (ours) vs float64: the absolute error is float32 eps of the peak rate.
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-8)


# A validation loss sequence and the scale ReduceLROnPlateau(patience=1, factor=0.5,
# cooldown=1, threshold=0.1) gives after each epoch, worked out by hand: epochs 2-3 do
# not beat 1.0 by 10%, so after epoch 3 (2 bad epochs > patience) the rate halves; epoch
# 4 is cooldown; epoch 5 is bad once; 0.5 is the new best; epochs 7-8 halve it again.
PLATEAU_LOSSES = [1.0, 0.95, 0.92, 0.91, 0.9, 0.5, 0.49, 0.48, 0.47, 0.46]
PLATEAU_SCALES = [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]


def _plateau_scales(values, mode="min", **fields):
  config = default_config().schedule
  config.update({"factor": 0.5, "patience": 1, "cooldown": 1, "threshold": 0.1, **fields})
  record, scales = {}, []
  for value in values:
    record = plateau.update(record, value, config, mode, BASE_LR)
    scales.append(record["lr_scale"])
  return scales


def test_plateau_lowers_the_rate_as_worked_out_by_hand():
  assert _plateau_scales(PLATEAU_LOSSES) == pytest.approx(PLATEAU_SCALES)
  # min_lr is a floor.
  assert _plateau_scales(PLATEAU_LOSSES, min_lr=0.04)[-1] == pytest.approx(0.4)


@pytest.mark.parametrize("mode,threshold_mode", [("min", "rel"), ("min", "abs"),
                                                 ("max", "rel"), ("max", "abs")])
def test_plateau_matches_pytorch(mode, threshold_mode):
  torch = pytest.importorskip("torch")
  values = list(np.random.default_rng(1).normal(1.0, 0.05, 40).cumsum() / np.arange(1, 41))
  optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
  scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
      optimizer, mode=mode, factor=0.5, patience=2, threshold=0.01, threshold_mode=threshold_mode,
      cooldown=1, min_lr=0.01)
  expected = []
  for value in values:
    scheduler.step(value)
    expected.append(optimizer.param_groups[0]["lr"] / BASE_LR)
  ours = _plateau_scales(values, mode=mode, patience=2, threshold=0.01,
                         threshold_mode=threshold_mode, min_lr=0.01)
  assert min(expected) < 1.0  # The sequence does plateau.
  np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_set_lr_scale_changes_the_applied_rate_without_recompiling():
  config = default_config().optimizer
  config.name = "sgd"
  config.momentum = 0.0
  tx = optim.make_optimizer(config, optax.constant_schedule(BASE_LR))
  params = {"w": jnp.ones(3)}
  opt_state = tx.init(params)
  update = jax.jit(lambda s: tx.update({"w": jnp.ones(3)}, s, params))
  updates, opt_state = update(opt_state)
  np.testing.assert_allclose(updates["w"], -0.1)
  updates, opt_state = update(plateau.set_lr_scale(opt_state, 0.25))
  np.testing.assert_allclose(updates["w"], -0.025)
  assert float(optim.learning_rate(opt_state)) == pytest.approx(0.025)
  assert update._cache_size() == 1  # pylint: disable=protected-access


def _optimizer(name, **fields):
  config = default_config().optimizer
  config.name = name
  config.update(fields)
  return optim.make_optimizer(config, optax.constant_schedule(BASE_LR))


PARAMS = {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)}
ZERO_GRADS = jax.tree.map(jnp.zeros_like, PARAMS)


def test_decoupled_weight_decay_skips_biases():
  tx = _optimizer("adamw", weight_decay=0.5)
  updates, _ = tx.update(ZERO_GRADS, tx.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates["kernel"], -BASE_LR * 0.5 * 2.0)  # -lr * wd * w
  np.testing.assert_allclose(updates["bias"], 0.0)


def test_l2_weight_decay_adds_to_the_gradient_of_kernels_only():
  tx = _optimizer("sgd", momentum=0.0, weight_decay=0.5)
  updates, _ = tx.update(ZERO_GRADS, tx.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates["kernel"], -BASE_LR * 0.5 * 2.0)  # grad += wd * w
  np.testing.assert_allclose(updates["bias"], 0.0)


# (jaxlearn config fields, the torch.optim optimizer with the same settings): unset fields
# must take the PyTorch defaults.
TORCH_OPTIMIZERS = [
    ({"name": "sgd"}, lambda o, p: o.SGD(p, lr=BASE_LR)),
    ({"name": "sgd", "momentum": 0.9}, lambda o, p: o.SGD(p, lr=BASE_LR, momentum=0.9)),
    ({"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
     lambda o, p: o.SGD(p, lr=BASE_LR, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ({"name": "adam"}, lambda o, p: o.Adam(p, lr=BASE_LR)),
    ({"name": "adam", "b1": 0.8, "b2": 0.99, "eps": 1e-6, "weight_decay": 0.01},
     lambda o, p: o.Adam(p, lr=BASE_LR, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)),
    ({"name": "adamw"}, lambda o, p: o.AdamW(p, lr=BASE_LR)),
    ({"name": "adamw", "weight_decay": 0.1}, lambda o, p: o.AdamW(p, lr=BASE_LR, weight_decay=0.1)),
    ({"name": "rmsprop"}, lambda o, p: o.RMSprop(p, lr=BASE_LR)),
    ({"name": "rmsprop", "alpha": 0.9, "momentum": 0.9, "eps": 1e-6, "weight_decay": 0.01},
     lambda o, p: o.RMSprop(p, lr=BASE_LR, alpha=0.9, momentum=0.9, eps=1e-6, weight_decay=0.01)),
    ({"name": "adagrad"}, lambda o, p: o.Adagrad(p, lr=BASE_LR)),
    ({"name": "adagrad", "eps": 1e-6, "weight_decay": 0.01},
     lambda o, p: o.Adagrad(p, lr=BASE_LR, eps=1e-6, weight_decay=0.01)),
]
_A = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
_B = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)


def _quadratic_grad(w):
  """The gradient of 0.5 * ||A w - B||^2 at w (numpy or torch): trajectories feed back."""
  return _A.T @ (_A @ w - _B) if isinstance(w, np.ndarray) else None


@pytest.mark.parametrize("fields,make_torch", TORCH_OPTIMIZERS,
                         ids=[f"{f['name']}-{i}" for i, (f, _) in enumerate(TORCH_OPTIMIZERS)])
def test_every_optimizer_follows_its_torch_namesakes_trajectory(fields, make_torch):
  torch = pytest.importorskip("torch")
  w0 = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
  tx = _optimizer(**fields)
  params = {"kernel": jnp.asarray(w0)}  # A matrix: decayed by both sides.
  opt_state = tx.init(params)
  update = jax.jit(lambda g, s, p: tx.update(g, s, p))
  weight = torch.nn.Parameter(torch.tensor(w0))
  torch_optimizer = make_torch(torch.optim, [weight])
  a, b = torch.tensor(_A), torch.tensor(_B)
  for step in range(20):
    grads = {"kernel": jnp.asarray(_quadratic_grad(np.asarray(params["kernel"])))}
    updates, opt_state = update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    torch_optimizer.zero_grad()
    (0.5 * ((a @ weight - b) ** 2).sum()).backward()
    torch_optimizer.step()
    # Rounding only: 1e-5 is a ten-thousandth of a step of lr 0.1.
    np.testing.assert_allclose(params["kernel"], weight.detach().numpy(), rtol=2e-5, atol=1e-5,
                               err_msg=f"step {step}")


def test_lion_follows_the_papers_update_with_its_defaults():
  """Lion (Chen et al. 2023; not in torch.optim): betas (0.9, 0.99), decoupled decay."""
  w = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float64)
  tx = _optimizer("lion", weight_decay=0.1)
  params = {"kernel": jnp.asarray(w, jnp.float32)}
  opt_state, m = tx.init(params), np.zeros_like(w)
  for _ in range(20):
    g = _quadratic_grad(w)
    w = w - BASE_LR * (np.sign(0.9 * m + 0.1 * g) + 0.1 * w)
    m = 0.99 * m + 0.01 * g
    grads = {"kernel": jnp.asarray(_quadratic_grad(np.asarray(params["kernel"], np.float64)),
                                   jnp.float32)}
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(params["kernel"], w, rtol=1e-4, atol=1e-5)


def test_clipping_by_global_norm_follows_torch_clip_grad_norm():
  torch = pytest.importorskip("torch")
  w0 = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
  tx = _optimizer("sgd", momentum=0.9, clip_norm=0.5)
  params, weight = {"kernel": jnp.asarray(w0)}, torch.nn.Parameter(torch.tensor(w0))
  opt_state, torch_optimizer = tx.init(params), torch.optim.SGD([weight], lr=BASE_LR, momentum=0.9)
  a, b = torch.tensor(_A), torch.tensor(_B)
  for _ in range(20):
    grads = {"kernel": jnp.asarray(_quadratic_grad(np.asarray(params["kernel"])))}
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    torch_optimizer.zero_grad()
    (0.5 * ((a @ weight - b) ** 2).sum()).backward()
    torch.nn.utils.clip_grad_norm_([weight], 0.5)
    torch_optimizer.step()
  np.testing.assert_allclose(params["kernel"], weight.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_gradient_clipping_by_global_norm_and_by_value():
  grads = {"kernel": jnp.array([[3.0, 0.0], [0.0, 0.0]]), "bias": jnp.array([4.0, 0.0])}
  tx = _optimizer("sgd", momentum=0.0, clip_norm=1.0)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates["kernel"][0, 0], -BASE_LR * 3 / 5)  # norm 5 -> 1
  np.testing.assert_allclose(updates["bias"][0], -BASE_LR * 4 / 5)
  tx = _optimizer("sgd", momentum=0.0, clip_value=0.5)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates["kernel"][0, 0], -BASE_LR * 0.5)


def test_unknown_names_are_config_errors():
  with pytest.raises(ConfigError, match="Unknown schedule 'cosin' in config.schedule.name; "
                     "choose one of \\['constant', 'cosine', 'cyclic', 'exponential'"):
    _schedule("cosin")
  with pytest.raises(ConfigError, match="Unknown optimizer 'adamm'"):
    _optimizer("adamm")
  with pytest.raises(ConfigError, match="needs config.schedule.lr_lambda, a function of the epoch"):
    _schedule("lambda")
