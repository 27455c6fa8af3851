"""Diagnosis: runs made to have each problem get it named, with evidence; a healthy run gets none.

The MNIST runs (slow) are the issue's own: a deep sigmoid MLP, a tiny training
subset, a learning rate of 1, one of 1e-6, and the quick start's LeNet-5. The
default suite checks the per-layer statistics against jax.grad and optax, a
95/5 imbalanced binary task, a test split copied from training, and each
check on records built by hand.
"""

import json
import os
import subprocess
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import binary_mlp, mnist_lenet, mnist_mlp, tabular_mlp
from jaxlearn import data
from jaxlearn.core import state as state_lib, tasks
from jaxlearn.errors import JaxlearnError
from jaxlearn.evaluation.evaluate import evaluate_run
from jaxlearn.runs import build, diagnosis
from jaxlearn.training import layer_stats
from jaxlearn.training.train import train_and_evaluate
from tests.conftest import PROJECT_ROOT


def _problems(workdir) -> list[str]:
  with open(os.path.join(workdir, "diagnosis.json"), encoding="utf-8") as f:
    return [f["problem"] for f in json.load(f)["findings"]]


def _quiet(config):
  config.progress_bar, config.compilation_cache_dir = False, ""
  return config


# ---------------------------------------------------------------- per-layer statistics


def _lenet_state():
  config = mnist_lenet.get_config()
  state = build.create_state(config, 10, {"in_channels": 1, "num_classes": 10})
  return config, state


def test_layer_statistics_equal_jax_grad_and_the_optimizers_own_update():
  config, state = _lenet_state()
  task = tasks.make_task(config, 10)
  rng = np.random.default_rng(0)
  batch = {"inputs": rng.normal(size=(32, 28, 28, 1)).astype(np.float32),
           "targets": rng.integers(0, 10, 32).astype(np.int32)}
  stats = layer_stats.make(task, batch)(state)
  assert list(stats) == ["conv1", "conv2", "conv3", "fc1", "fc2"]  # the model's call order

  def loss(params):
    return jnp.mean(task.loss(state.apply_model(params, batch["inputs"], train=False)[0],
                              batch["targets"]))

  grads = jax.grad(loss)(state.params)
  updates, _ = state.tx.update(grads, state.opt_state, state.params)
  norm = lambda tree, layer: float(np.sqrt(sum(np.sum(np.square(np.asarray(x)))
                                                for x in jax.tree.leaves(tree[layer]))))
  for layer in stats:
    np.testing.assert_allclose(stats[layer]["grad_norm"], norm(grads, layer), rtol=1e-4)
    np.testing.assert_allclose(stats[layer]["weight_norm"], norm(state.params, layer), rtol=1e-4)
    np.testing.assert_allclose(stats[layer]["update_ratio"],
                               norm(updates, layer) / norm(state.params, layer), rtol=1e-4)
  assert "dead_fraction" not in stats["conv1"]  # its input is the data, not units


def test_units_that_never_fire_are_counted_as_dead():
  config, state = _lenet_state()
  model = nnx.merge(state.graphdef, state.params, state.model_state)
  bias = model.fc1.bias.get_value()
  # 21 of fc1's 84 units never fire, the other 63 always do.
  model.fc1.bias.set_value(bias.at[:21].set(-1e3).at[21:].set(1e3))
  params = state_lib.pure(nnx.state(model, nnx.Param))
  state = state.replace(params=params)
  batch = {"inputs": np.random.default_rng(1).normal(size=(16, 28, 28, 1)).astype(np.float32),
           "targets": np.zeros(16, np.int32)}
  stats = layer_stats.make(tasks.make_task(config, 10), batch)(state)
  assert stats["fc2"]["dead_fraction"] == pytest.approx(21 / 84)


# ---------------------------------------------------------------- runs made to have a problem


def test_an_imbalanced_binary_task_is_named_at_the_end_of_training_and_after_evaluate(tmp_path):
  rng = np.random.default_rng(0)
  path = tmp_path / "rare.csv"
  with open(path, "w", encoding="utf-8") as f:  # features that say nothing of the class, 95/5
    f.write("a,b,c,d,target\n")
    for row in rng.normal(size=(2000, 4)):
      f.write(",".join(f"{v:.4f}" for v in row) + f",{int(rng.random() < 0.05)}\n")
  config = _quiet(tabular_mlp.get_config())
  config.data.path, config.data.target_column, config.data.drop_columns = str(path), "target", ""
  config.num_epochs, config.batch_size = 3, 64
  workdir = str(tmp_path / "imbalanced")
  train_and_evaluate(config, workdir)
  assert "class_imbalance" in _problems(workdir)
  evaluate_run(workdir)
  result = subprocess.run([sys.executable, "-m", "jaxlearn.diagnose", f"--workdir={workdir}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  line = next(l for l in result.stdout.splitlines() if l.startswith("- Class imbalance"))
  assert "of the test split" in line and "its recall is 0.00" in line, line


def test_a_test_split_copied_from_training_is_suspiciously_perfect(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(600, 2)).astype(np.float32)
  x[:, 0] += np.sign(x[:, 0])  # a wide margin on one feature: every model gets it right
  y = (x[:, :1] > 0).astype(np.float32)
  config = _quiet(binary_mlp.get_config())
  config.num_epochs = 10
  workdir = str(tmp_path / "leak")
  summary = train_and_evaluate(config, workdir, raw=data.from_arrays((x, y), (x[:200], y[:200]),
                                                                     kind="features"))
  assert summary["test_accuracy"] == 1.0
  with open(os.path.join(workdir, "diagnosis.json"), encoding="utf-8") as f:
    (perfect,) = [f for f in json.load(f)["findings"] if f["problem"] == "suspiciously_perfect"]
  # The first 200 training examples are the test split; the rest went to validation or train.
  train = data.make_splits(data.from_arrays((x, y), (x[:200], y[:200]), kind="features"),
                           config.data, config.seed).train["inputs"]
  expected = diagnosis.overlap(train, x[:200])[0]
  assert expected > 100 and f"{expected} of the 200 test examples" in perfect["evidence"]


def test_diagnose_refuses_a_folder_without_a_run(tmp_path):
  result = subprocess.run([sys.executable, "-m", "jaxlearn.diagnose", f"--workdir={tmp_path}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert "holds no run (no config.json)" in result.stderr


# ---------------------------------------------------------------- each check, on records by hand


def _epochs(train_loss, val_loss, **series):
  return [{"epoch": i + 1, "train_loss": t, "val_loss": v,
           **{k: values[i] for k, values in series.items()}}
          for i, (t, v) in enumerate(zip(train_loss, val_loss))]


def _records(history, windows=(), layers=(), **fields):
  summary = {"history": history, "best_epoch": fields.pop("best_epoch", len(history)),
             "epochs_run": len(history), "stop_reason": fields.pop("stop_reason", "completed"),
             **fields.pop("summary", {})}
  return diagnosis.Records(config=fields.pop("config", {"optimizer": {"learning_rate": 0.1}}),
                           summary=summary, windows=list(windows), layers=list(layers), **fields)


def test_the_checks_on_hand_made_records():
  find = lambda r: {f.problem: f for f in diagnosis.diagnose(r)}
  overfit = find(_records(_epochs([1.0, 0.5, 0.3, 0.1, 0.05], [1.1, 0.8, 0.9, 1.0, 1.2]),
                          best_epoch=2))
  assert "rose from 0.8 at epoch 2 to 1.2 at epoch 5" in overfit["overfitting"].evidence
  rising = find(_records(_epochs([1.0, 0.6, 2.0], [1.0, 0.7, 2.1]), best_epoch=2))
  assert "rose from 0.6 at epoch 2 to 2 at epoch 3" in rising["learning_rate_too_high"].evidence
  long = find(_records(_epochs([1.0] * 12, [1.0] * 12), best_epoch=3))
  assert "best validation epoch was 3 of 12" in long["trained_too_long"].evidence
  early = find(_records(_epochs([1.0, 0.5], [1.0, 0.8]), windows=[
      {"loss": 1.0, "learning_rate": 0.1}, {"loss": 0.5, "learning_rate": 0.1}]))
  assert "still falling at the last epoch (1 to 0.8, 20.0%)" in early["stopped_too_early"].evidence
  annealed = find(_records(_epochs([1.0, 0.5], [1.0, 0.8]), windows=[
      {"loss": 1.0, "learning_rate": 0.1}, {"loss": 0.5, "learning_rate": 1e-4}]))
  assert "stopped_too_early" not in annealed  # one-cycle's end: the schedule is done
  layers = [{"epoch": 1, "layers": {
      "a": {"grad_norm": 1e-6, "update_ratio": 1e-3, "weight_norm": 1, "dead_fraction": 0.0},
      "b": {"grad_norm": 1e-2, "update_ratio": 1e-3, "weight_norm": 1, "dead_fraction": 0.7},
      "c": {"grad_norm": 1.0, "update_ratio": 0.5, "weight_norm": 1, "dead_fraction": 0.1}}}]
  found = find(_records(_epochs([1.0, 0.9], [1.0, 0.9]), layers=layers))
  assert "70% of the units feeding b" in found["dead_relus"].evidence
  assert "c's 0.5 (5e+02x)" in found["uneven_layer_updates"].evidence
  layers[0]["layers"]["b"]["dead_fraction"] = 0.0
  assert "a's is 1e-06 of c's" in find(_records(_epochs([1.0, 0.9], [1.0, 0.9]), layers=layers))[
      "vanishing_gradients"].evidence
  zero = {"grad_norm": 0.0, "update_ratio": 0.0, "weight_norm": 0.0, "dead_fraction": 1.0}
  stuck = diagnosis.diagnose(_records(_epochs([2.3, 2.3], [2.3, 2.3]), layers=[
      {"epoch": 2, "layers": {"a": zero, "b": zero, "c": layers[0]["layers"]["c"]}}]))
  assert [f.problem for f in stuck] == ["zero_weights"]  # It explains the dead units too.
  assert stuck[0].evidence.startswith("a, b still have all-zero weights at epoch 2")
  # At chance with dead ReLUs: the rate's fault only when the steps were large.
  for ratio, blamed in ((0.5, True), (5e-3, False)):
    dead = {"grad_norm": 1e-3, "update_ratio": ratio, "weight_norm": 1, "dead_fraction": 0.9}
    chance = find(_records(_epochs([2.3, 2.3], [2.3, 2.3], train_accuracy=[0.1, 0.1]),
                           layers=[{"epoch": 2, "layers": {"a": dead, "b": dead}}],
                           class_counts=[10] * 10))
    assert ("learning_rate_too_high" in chance) == blamed, chance
    assert "dead_relus" in chance
  exploding = find(_records(_epochs([1.0, 0.9], [1.0, 0.9], train_grad_norm=[1.0, 500.0])))
  assert "grew from 1 in epoch 1 to 500 in epoch 2" in exploding["exploding_gradients"].evidence
  healthy = _records(_epochs([1.0, 0.5, 0.3], [1.0, 0.6, 0.5], train_accuracy=[0.7, 0.9, 0.95]),
                     windows=[{"loss": 2.3, "learning_rate": 1e-3},
                              {"loss": 0.3, "learning_rate": 1e-5}], class_counts=[50, 50])
  assert diagnosis.diagnose(healthy) == []


# ---------------------------------------------------------------- the issue's MNIST runs


def _mnist_run(tmp_path, name, config, root):
  config = _quiet(config)
  config.data.dir = root
  workdir = str(tmp_path / name)
  try:
    train_and_evaluate(config, workdir)
  except JaxlearnError:
    pass  # A run that diverges ends in an error; its records stay for the diagnosis.
  return workdir


@pytest.mark.slow
def test_the_issues_runs_each_get_their_problem_and_lenet_none(tmp_path, mnist_root):
  sigmoid = mnist_mlp.get_config()
  sigmoid.model.hidden, sigmoid.model.activation = (64,) * 8, "sigmoid"
  sigmoid.optimizer.name, sigmoid.optimizer.learning_rate = "sgd", 0.1
  sigmoid.schedule.name, sigmoid.data.max_train_examples, sigmoid.num_epochs = "constant", 3000, 2
  assert "vanishing_gradients" in _problems(_mnist_run(tmp_path, "sigmoid", sigmoid, mnist_root))

  zeros = mnist_mlp.get_config()
  zeros.model.hidden, zeros.init.linear, zeros.data.max_train_examples = (64, 64), "zeros", 3000
  zeros.num_epochs = 2
  assert _problems(_mnist_run(tmp_path, "zeros", zeros, mnist_root)) == ["zero_weights"]

  tiny = mnist_mlp.get_config()
  tiny.model.hidden, tiny.data.max_train_examples, tiny.batch_size = (256,), 300, 64
  tiny.optimizer.learning_rate, tiny.schedule.name, tiny.num_epochs = 1e-3, "constant", 40
  assert "overfitting" in _problems(_mnist_run(tmp_path, "tiny", tiny, mnist_root))

  for rate, problem in ((1.0, "learning_rate_too_high"), (1e-6, "learning_rate_too_low")):
    config = mnist_lenet.get_config()
    config.optimizer.learning_rate, config.schedule.name = rate, "constant"
    config.data.max_train_examples, config.num_epochs = 3000, 3
    problems = _problems(_mnist_run(tmp_path, f"rate_{rate:g}", config, mnist_root))
    assert problems[0] == problem, problems
    assert "underfitting" not in problems

  healthy = _mnist_run(tmp_path, "lenet", mnist_lenet.get_config(), mnist_root)
  assert _problems(healthy) == []
  result = subprocess.run([sys.executable, "-m", "jaxlearn.diagnose", f"--workdir={healthy}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0 and result.stdout.startswith("No problem found in"), result
