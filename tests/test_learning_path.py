"""Full runs of the learning-path configs that reach their published bars.

The fast ones run in the default suite; the long real-data runs are marked slow
(CI runs them too).
"""

import os

import jax
import numpy as np
import pytest

from configs import (binary_mlp, fashion_mnist_cnn, linreg, mnist_transformer, sst2_gru,
                     sst2_lstm)
from jaxlearn import data
from jaxlearn.runs import build, checkpoint
from jaxlearn.training import train
from tests.conftest import real_data_dir


def _quiet(config, root=""):
  config.progress_bar = False
  if root:
    config.data.dir = root
  return config


def _real_root(dataset: str) -> str:
  root = real_data_dir()
  if not os.path.isdir(os.path.join(root, dataset)):
    pytest.skip(f"real {dataset} not found under {root}")
  return root


def test_linear_regression_recovers_the_true_weights(tmp_path):
  config = _quiet(linreg.get_config())
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["test_r2"] > 0.999
  # The fitted weights in the best checkpoint.
  splits = data.make_splits(data.load_raw(config.data, config.seed), config.data, config.seed)
  task, splits = build.prepare_task(config, splits)
  state = build.create_state(config, 1, build.data_dims(splits, task))
  best, _ = checkpoint.Checkpoints(str(tmp_path)).restore_best(state)
  kernel = np.asarray(jax.device_get(best.params["linear"]["kernel"])).ravel()
  bias = float(np.asarray(jax.device_get(best.params["linear"]["bias"]))[0])
  np.testing.assert_allclose(kernel, config.data.true_weights, atol=1e-2)
  assert bias == pytest.approx(config.data.true_bias, abs=1e-2)


def test_two_layer_classifier_separates_the_moons(tmp_path):
  summary = train.train_and_evaluate(_quiet(binary_mlp.get_config()), str(tmp_path))
  assert summary["test_accuracy"] >= 0.95 and summary["test_roc_auc"] >= 0.98, summary


@pytest.mark.slow
def test_fashion_mnist_cnn_reaches_91_percent(tmp_path):
  config = _quiet(fashion_mnist_cnn.get_config(), _real_root("fashion_mnist"))
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["test_accuracy"] >= 0.91, summary


@pytest.mark.slow
def test_mnist_transformer_reaches_98_percent(tmp_path):
  config = _quiet(mnist_transformer.get_config(), _real_root("mnist"))
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["test_accuracy"] >= 0.98, summary


@pytest.mark.slow
@pytest.mark.parametrize("experiment", [sst2_gru, sst2_lstm], ids=["gru", "lstm"])
def test_sst2_recurrent_classifiers_reach_80_percent_dev(experiment, tmp_path):
  config = _quiet(experiment.get_config(), _real_root("sst2"))
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["test_accuracy"] >= 0.80, summary  # The test split is GLUE's dev set.
