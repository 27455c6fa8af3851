"""The learning-rate range test: the rates it applies, where it stops, what it suggests."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import linreg, mnist_lenet
from jaxlearn import data
from jaxlearn.training import lr_find
from jaxlearn.training.train import train_and_evaluate
from tests.conftest import PROJECT_ROOT


def _full_batch_regression():
  """Linear regression by full-batch SGD, where the rate that diverges is known in closed form."""
  config = linreg.get_config()
  config.data.num_examples = 400
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 3)).astype(np.float32) * np.array([1.0, 2.0, 0.5], np.float32)
  y = (x @ np.array([2.0, -3.4, 1.0]) + 4.2 + rng.normal(scale=0.1, size=400)).astype(np.float32)
  raw = data.from_arrays((x, y[:, None]), kind="features")
  train = data.make_splits(raw, config.data, config.seed).train
  config.batch_size = len(train["targets"])
  # MSE's Hessian is (2/n) [X 1]^T [X 1]; gradient descent diverges above 2 / its largest eigenvalue.
  design = np.concatenate([train["inputs"], np.ones((len(train["inputs"]), 1))], axis=1)
  largest = np.linalg.eigvalsh(2 / len(design) * design.T @ design).max()
  return config, raw, 2 / largest


def test_the_rate_rises_geometrically_and_the_test_stops_where_descent_diverges():
  config, raw, limit = _full_batch_regression()
  test = lr_find.find_learning_rate(config, min_lr=1e-4, max_lr=100.0, steps=80, raw=raw)
  ratios = test.rates[1:] / test.rates[:-1]
  np.testing.assert_allclose(ratios, (100.0 / 1e-4) ** (1 / 79), rtol=1e-9)
  assert test.rates[0] == pytest.approx(1e-4)
  assert test.stopped.startswith("the loss diverged at rate")
  # Below the limit every step shrinks the error; beyond it the error along the top
  # eigenvector grows by |1 - rate * eigenvalue| per step, from nearly nothing (descent had
  # removed it), so it takes some steps of rising rates to reach 4x the lowest loss.
  assert limit < test.rates[-1] < 10 * limit, (limit, test.rates[-1])
  assert test.rates[0] < test.suggestion < limit
  assert test.smoothed[int(np.argmin(np.abs(test.rates - test.suggestion)))] < test.smoothed[0]
  assert "steepest fall" in test.reason


def test_the_suggestion_is_the_steepest_fall_before_the_lowest_point():
  rates = np.logspace(-6, 1, 71)
  position = np.log10(rates)
  loss = 2.3 - 2 / (1 + np.exp(-3 * (position + 3)))  # falls fastest at 1e-3 ...
  loss[60:] += np.linspace(0.2, 9, 11)  # ... and blows up after 1e0
  rate, reason = lr_find.suggest(rates, loss)
  assert rate == pytest.approx(1e-3, rel=0.01)
  assert "before its lowest point" in reason
  flat = np.full(30, 1.0)
  flat[2] = 0.5  # lowest at the start: no slope to read
  rate, reason = lr_find.suggest(np.logspace(-5, -2, 30), flat)
  assert rate == pytest.approx(np.logspace(-5, -2, 30)[2] / 10)
  assert "never fell for long" in reason


def test_bad_ranges_are_refused():
  config = linreg.get_config()
  with pytest.raises(Exception, match="rates must rise: min_lr=1, max_lr=0.1"):
    lr_find.find_learning_rate(config, min_lr=1.0, max_lr=0.1)
  with pytest.raises(Exception, match="at least 10 steps"):
    lr_find.find_learning_rate(config, steps=3)


def test_the_command_writes_only_its_csv_and_plot(tmp_path):
  out = tmp_path / "out"
  result = subprocess.run([sys.executable, "-m", "jaxlearn.lr_find", "--config=configs/linreg.py",
                           f"--out={out}", "--steps=40", "--min_lr=1e-4", "--max_lr=10"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(out)) == ["lr_find.csv", "lr_find.png"]
  assert sorted(os.listdir(tmp_path)) == ["out"]
  with open(out / "lr_find.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [r["step"] for r in rows] == [str(i + 1) for i in range(len(rows))]
  assert float(rows[0]["learning_rate"]) == pytest.approx(1e-4)
  suggested = float(result.stdout.split("Suggested learning rate: ")[1].split(" ")[0])
  assert f"--config.optimizer.learning_rate={suggested:.3g}" in result.stdout
  assert float(rows[0]["learning_rate"]) < suggested < float(rows[-1]["learning_rate"])
  result = subprocess.run([sys.executable, "-m", "jaxlearn.lr_find", "--config=configs/linreg.py",
                           f"--out={out / 'lr_find.csv'}"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and "is a file; give a folder" in result.stderr


@pytest.mark.slow
def test_the_suggested_rate_trains_lenet_as_well_as_the_default_recipe(mnist_root, tmp_path):
  """MNIST, LeNet-5 with Adam and one-cycle: the suggestion as the peak rate, the same epochs."""
  config = mnist_lenet.get_config()
  config.data.dir = mnist_root
  config.progress_bar = False
  test = lr_find.find_learning_rate(config)
  default = train_and_evaluate(config, str(tmp_path / "default"))
  config.optimizer.learning_rate = test.suggestion
  suggested = train_and_evaluate(config, str(tmp_path / "suggested"))
  assert 1e-4 < test.suggestion < 1e-1, test.reason
  assert suggested["test_accuracy"] >= default["test_accuracy"] - 0.003, (test.suggestion,
                                                                           suggested, default)
