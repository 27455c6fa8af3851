"""Training on the real MNIST files (../shared/data or $JAXLEARN_DATA_DIR)."""

import pytest

from configs import mnist_lenet, mnist_mlp
from jaxlearn import train


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
def test_default_config_reaches_99_percent(mnist_root, tmp_path):
  summary = train.train_and_evaluate(_config(mnist_root), str(tmp_path))
  assert summary["test_accuracy"] >= 0.99, summary


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
