"""Training on the real MNIST files (../shared/data or $JAXLEARN_DATA_DIR)."""

import pytest

from configs import mnist_lenet, mnist_mlp
from jaxlearn.evaluation import evaluate
from jaxlearn.training import train


def _config(mnist_root, **overrides):
  config = mnist_lenet.get_config()
  config.data.dir = mnist_root
  config.progress_bar = False
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def test_one_epoch_of_lenet5_reaches_98_percent(mnist_root, tmp_path):
  summary = train.train_and_evaluate(_config(mnist_root, num_epochs=1), str(tmp_path))
  assert summary["test_accuracy"] >= 0.98, summary


@pytest.mark.slow
def test_default_config_reaches_99_percent_and_evaluate_agrees(mnist_root, tmp_path):
  summary = train.train_and_evaluate(_config(mnist_root), str(tmp_path))
  assert summary["test_accuracy"] >= 0.99, summary
  report = evaluate.evaluate_run(str(tmp_path), "test")
  assert report["num_examples"] == 10_000
  assert report["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
  assert [c["support"] for c in report["per_class"]] == [980, 1135, 1032, 1010, 982, 892, 958,
                                                         1028, 974, 1009]  # MNIST's test set.


@pytest.mark.slow  # 30 s on 2 cores; the float32 epoch above stays in the default suite.
def test_one_epoch_of_lenet5_in_bf16_reaches_98_percent(mnist_root, tmp_path):
  summary = train.train_and_evaluate(_config(mnist_root, num_epochs=1, precision="bf16"),
                                     str(tmp_path))
  assert summary["test_accuracy"] >= 0.98, summary


@pytest.mark.slow
def test_mnist_mlp_config_reaches_97_5_percent(mnist_root, tmp_path):
  config = mnist_mlp.get_config()
  config.data.dir = mnist_root
  config.progress_bar = False
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["test_accuracy"] >= 0.975, summary
