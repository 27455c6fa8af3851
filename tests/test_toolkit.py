"""Init schemes, accumulation, mixed precision, EMA, non-finite skipping, transfer, early stopping."""

import functools
import math
import shutil

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxlearn import create_train_state, train_step
from jaxlearn.config import default_config
from jaxlearn.core import optim
from jaxlearn.models import MLP, initializers as init
from jaxlearn.runs import build
from jaxlearn.training import train


def _init_config(**kinds):
  config = default_config().init
  config.update(kinds)
  return config


# Scheme -> the standard deviation its formula gives a (fan_in=1000, fan_out=500) layer.
STD_FORMULAS = {
    "normal": 0.01,
    "xavier_uniform": math.sqrt(2 / 1500),
    "xavier_normal": math.sqrt(2 / 1500),
    "kaiming_uniform": math.sqrt(2 / 1000),
    "kaiming_normal": math.sqrt(2 / 1000),
    "lecun_uniform": math.sqrt(1 / 1000),
    "lecun_normal": math.sqrt(1 / 1000),
    "zeros": 0.0,
}


@pytest.mark.parametrize("scheme", sorted(STD_FORMULAS))
def test_init_scheme_statistics_match_the_formula(scheme):
  model = MLP(num_classes=500, in_features=1000, hidden=(), rngs=nnx.Rngs(0))
  init.initialise(model, _init_config(linear=scheme), jax.random.PRNGKey(1))
  kernel = np.asarray(model.head.kernel.get_value())
  assert abs(kernel.mean()) < 1e-3 * max(STD_FORMULAS[scheme], 1)
  assert kernel.std() == pytest.approx(STD_FORMULAS[scheme], rel=0.01, abs=1e-12)
  if scheme.endswith("uniform"):  # Bounded by sqrt(3) * std.
    assert np.abs(kernel).max() <= math.sqrt(3) * STD_FORMULAS[scheme] + 1e-7
  np.testing.assert_array_equal(model.head.bias.get_value(), 0.0)


def test_init_is_per_layer_kind_and_conv_fans_include_the_window():
  from jaxlearn.models import LeNet5  # pylint: disable=import-outside-toplevel
  model = LeNet5(rngs=nnx.Rngs(0))
  fc_before = np.asarray(model.fc1.kernel.get_value())
  init.initialise(model, _init_config(conv="kaiming_normal"), jax.random.PRNGKey(1))
  np.testing.assert_array_equal(model.fc1.kernel.get_value(), fc_before)  # linear: "default".
  conv3 = np.asarray(model.conv3.kernel.get_value())  # 5x5x16 -> 120: fan_in 400.
  assert conv3.std() == pytest.approx(math.sqrt(2 / 400), rel=0.03)


def _mlp_state(tx, seed=0):
  return create_train_state(MLP(in_features=20, hidden=(32,), rngs=nnx.Rngs(seed)), tx,
                            jax.random.PRNGKey(0))


def _batch(n, seed=0):
  rng = np.random.default_rng(seed)
  return {"inputs": rng.normal(size=(n, 20)).astype(np.float32),
          "targets": rng.integers(0, 10, n).astype(np.int32)}


def test_four_accumulated_micro_batches_equal_one_four_times_larger_batch():
  config = default_config().optimizer
  # SGD with momentum: its update is linear in the gradient, so the two must agree to
  # float32 rounding (Adam divides by sqrt(v), which magnifies rounding of tiny gradients).
  config.update({"name": "sgd", "momentum": 0.9, "learning_rate": 0.5})
  big = _batch(64)
  micro = [jax.tree.map(lambda a, i=i: a[16 * i:16 * (i + 1)], big) for i in range(4)]
  step = jax.jit(train_step)

  one = _mlp_state(optim.make_optimizer(config, optax.constant_schedule(0.5)))
  config.accumulate_steps = 4
  accumulated = _mlp_state(optim.make_optimizer(config, optax.constant_schedule(0.5)))
  for round_ in range(2):  # Two updates, so the optimizer's moments are compared too.
    one, _ = step(one, big)
    for i, batch in enumerate(micro):
      before = accumulated.params
      accumulated, _ = step(accumulated, batch)
      changed = not all(np.array_equal(a, b) for a, b in
                        zip(jax.tree.leaves(before), jax.tree.leaves(accumulated.params)))
      assert changed == (i == 3), (round_, i)
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(accumulated.params)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_bf16_computes_in_bfloat16_and_keeps_float32_parameters_and_loss():
  tx = optax.sgd(0.1)
  model = MLP(in_features=20, hidden=(32,), rngs=nnx.Rngs(0))
  state = create_train_state(model, tx, jax.random.PRNGKey(0), compute_dtype=jnp.bfloat16)
  batch = _batch(32)
  text = jax.jit(train_step).lower(state, batch).as_text()
  assert "bf16" in text and "dot_general" in text
  dots = [line for line in text.splitlines() if "dot_general" in line]
  assert all("bf16" in line for line in dots)
  new_state, metrics = jax.jit(train_step)(state, batch)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(new_state.params))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(new_state.opt_state))
  fp32_state = create_train_state(MLP(in_features=20, hidden=(32,), rngs=nnx.Rngs(0)), tx,
                                  jax.random.PRNGKey(0))
  _, fp32_metrics = jax.jit(train_step)(fp32_state, batch)
  # Same loss to bf16's precision (8 mantissa bits), computed in float32 from bf16 logits.
  assert float(metrics.compute()["loss"]) == pytest.approx(
      float(fp32_metrics.compute()["loss"]), rel=2e-2)


def test_ema_follows_the_formula_and_is_what_evaluation_uses():
  decay = 0.9
  state = create_train_state(MLP(in_features=20, hidden=(32,), rngs=nnx.Rngs(0)),
                             optax.sgd(0.1), jax.random.PRNGKey(0), ema_decay=decay)
  expected = state.params
  step = jax.jit(train_step)
  for i in range(3):
    state, _ = step(state, _batch(32, seed=i))
    expected = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, expected, state.params)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(state.ema_params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert state.eval_params is state.ema_params
  assert "ema_params" in state.checkpoint_tree()


def test_skip_nonfinite_leaves_the_state_unchanged_and_counts_the_step():
  state = _mlp_state(optax.adam(1e-3))
  step = jax.jit(functools.partial(train_step, skip_nonfinite=True))
  state, _ = step(state, _batch(32))
  bad = _batch(32, seed=1)
  bad["inputs"][3, 0] = np.nan
  after, skipped = step(state, bad)
  assert float(skipped.compute()["nonfinite"]) == 1.0
  assert int(after.step) == int(state.step) + 1
  for a, b in zip(jax.tree.leaves((state.params, state.opt_state)),
                  jax.tree.leaves((after.params, after.opt_state))):
    np.testing.assert_array_equal(a, b)
  good, metrics = step(after, _batch(32, seed=2))
  assert float(metrics.compute()["nonfinite"]) == 0.0
  assert not np.array_equal(jax.tree.leaves(good.params)[0], jax.tree.leaves(after.params)[0])
  # Logged together, the skipped step adds nothing to the loss and half to `nonfinite`.
  window = skipped.merge(metrics).compute()
  assert float(window["loss"]) == pytest.approx(float(metrics.compute()["loss"]))
  assert float(window["nonfinite"]) == 0.5


# Early stopping in the real loop, driven by a scripted validation accuracy: with
# patience 2 and min_delta 0.01, 0.6 (epoch 2) is beaten only by 0.65 (epoch 4); epochs
# 5 and 6 do not beat it by more than 0.01, so the run stops after epoch 6 of 10.
SCRIPTED_VAL_ACCURACY = [0.5, 0.6, 0.605, 0.65, 0.655, 0.64, 0.9, 0.9, 0.9, 0.9]


def test_early_stopping_stops_where_the_metric_sequence_says_and_tests_the_best(
    small_config, tmp_path, monkeypatch):
  real_evaluate = train.evaluate
  calls = []

  def scripted_evaluate(eval_batch, state, batches):
    metrics = real_evaluate(eval_batch, state, batches)
    if len(calls) < len(SCRIPTED_VAL_ACCURACY) and int(state.step) == 9 * (len(calls) + 1):
      metrics["accuracy"] = SCRIPTED_VAL_ACCURACY[len(calls)]
      calls.append(int(state.step))
    else:  # The test split, on the restored best checkpoint.
      metrics["tested_step"] = int(state.step)
    return metrics

  monkeypatch.setattr(train, "evaluate", scripted_evaluate)
  small_config.num_epochs = 10
  small_config.early_stopping.patience = 2
  small_config.early_stopping.min_delta = 0.01
  workdir = str(tmp_path / "run")
  summary = train.train_and_evaluate(small_config, workdir)
  assert summary["epochs_run"] == 6
  assert summary["best_epoch"] == 4
  assert summary["best_val_accuracy"] == 0.65
  assert summary["test_tested_step"] == 4 * 9  # The best weights, restored.
  assert summary["stop_reason"] == ("early stopping: val accuracy has not improved by more "
                                    "than 0.01 for 2 epochs (best 0.65 at epoch 4)")
  # Rerunning the finished run trains nothing more.
  calls.clear()
  again = train.train_and_evaluate(small_config, workdir)
  assert again["epochs_run"] == 6 and not calls


def test_plateau_schedule_lowers_the_rate_in_the_loop(small_config, tmp_path, monkeypatch):
  real_evaluate = train.evaluate
  monkeypatch.setattr(train, "evaluate", lambda *args: {**real_evaluate(*args), "accuracy": 0.5})
  small_config.num_epochs = 4
  small_config.schedule.name = "plateau"
  small_config.schedule.patience = 1
  small_config.schedule.factor = 0.5
  small_config.optimizer.learning_rate = 1e-3
  summary = train.train_and_evaluate(small_config, str(tmp_path / "run"))
  rates = [h["train_learning_rate"] for h in summary["history"]]
  # Flat accuracy: epoch 1 sets the best, epochs 2-3 are bad, so the rate halves after epoch 3.
  assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4])


def test_transfer_copies_matching_parameters_and_keeps_a_new_head(small_config, tmp_path):
  small_config.num_epochs = 1
  source = str(tmp_path / "source")
  train.train_and_evaluate(small_config, source)
  trained = build.create_state(small_config, 9)
  from jaxlearn.runs import checkpoint  # pylint: disable=import-outside-toplevel
  trained, _ = checkpoint.Checkpoints(source).restore_best(trained)

  target = ml_collections.ConfigDict(small_config.to_dict())
  target.model.num_classes = 12
  target.init.from_checkpoint = source
  fresh = build.start_from_checkpoint(build.create_state(target, 9), source)
  np.testing.assert_array_equal(fresh.params["conv1"]["kernel"], trained.params["conv1"]["kernel"])
  np.testing.assert_array_equal(fresh.params["fc1"]["kernel"], trained.params["fc1"]["kernel"])
  assert fresh.params["fc2"]["kernel"].shape == (84, 12)

  # The loop transfers into a new run only; resuming it no longer needs the source.
  workdir = str(tmp_path / "target")
  train.train_and_evaluate(target, workdir)
  shutil.rmtree(source)
  target.num_epochs = 2
  assert train.train_and_evaluate(target, workdir)["epochs_run"] == 2
