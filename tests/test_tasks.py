"""Task kinds: metrics against numpy references, target checks, and top-k selection."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxlearn.config import default_config
from jaxlearn.core import tasks
from jaxlearn.errors import ConfigError


def _exact_auc(scores, labels):
  """The Mann-Whitney statistic: P(score of a positive > score of a negative), ties half."""
  pos, neg = scores[labels == 1], scores[labels == 0]
  greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return greater / (len(pos) * len(neg))


def test_roc_auc_matches_the_rank_statistic_and_merges_over_batches():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=3000).astype(np.float32)
  labels = (rng.random(3000) < 1 / (1 + np.exp(-1.5 * logits))).astype(np.float32)
  parts = [tasks.RocAuc.from_model_output(logits=jnp.asarray(logits[i:i + 1000, None]),
                                          labels=jnp.asarray(labels[i:i + 1000]))
           for i in range(0, 3000, 1000)]
  merged = parts[0].merge(parts[1]).merge(parts[2])
  assert float(merged.compute()) == pytest.approx(_exact_auc(logits, labels), abs=1e-3)


def test_roc_auc_ignores_masked_padding():
  logits = jnp.asarray([2.0, -1.0, 0.5, 9.0])
  labels = jnp.asarray([1.0, 0.0, 0.0, 0.0])
  mask = jnp.asarray([1.0, 1.0, 1.0, 0.0])  # The last (a high-scoring negative) is padding.
  auc = tasks.RocAuc.from_model_output(logits=logits, labels=labels, mask=mask).compute()
  assert float(auc) == pytest.approx(1.0)


def test_r_squared_matches_numpy_over_merged_batches():
  rng = np.random.default_rng(1)
  y = rng.normal(size=(200, 1)).astype(np.float32)
  predictions = (y + 0.3 * rng.normal(size=y.shape)).astype(np.float32)
  expected = 1 - ((y - predictions)**2).sum() / ((y - y.mean())**2).sum()
  a, b = (tasks.RSquared.from_model_output(logits=jnp.asarray(predictions[s]),
                                           labels=jnp.asarray(y[s, 0]))
          for s in (slice(0, 120), slice(120, 200)))
  assert float(a.merge(b).compute()) == pytest.approx(expected, rel=1e-4)


def test_top_k_accuracy_matches_argsort():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(500, 10)).astype(np.float32)
  labels = rng.integers(0, 10, 500)
  expected = np.mean([label in np.argsort(-row)[:5] for row, label in zip(logits, labels)])
  metric = tasks.top_k_accuracy(5).from_model_output(logits=jnp.asarray(logits),
                                                     labels=jnp.asarray(labels))
  assert float(metric.compute()) == pytest.approx(expected)


def test_binary_and_regression_metrics_from_one_batch():
  binary = tasks.BINARY.eval_metrics.single_from_model_output(
      loss=jnp.zeros(4), logits=jnp.asarray([[1.0], [-2.0], [0.5], [-0.1]]),
      labels=jnp.asarray([1.0, 0.0, 0.0, 1.0]), mask=None).compute()
  assert float(binary["accuracy"]) == pytest.approx(0.5)
  regression = tasks.REGRESSION.eval_metrics.single_from_model_output(
      loss=jnp.zeros(3), logits=jnp.asarray([[1.0], [2.0], [4.0]]),
      labels=jnp.asarray([1.5, 2.0, 3.0]), mask=None).compute()
  assert float(regression["mse"]) == pytest.approx((0.25 + 0 + 1) / 3)
  assert float(regression["mae"]) == pytest.approx(1.5 / 3)


def test_balanced_accuracy_and_f1_match_sklearn_over_batches_with_padding():
  metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(0)
  labels = (rng.random(300) < 0.1).astype(np.float32)  # Rare positives: where they matter.
  logits = rng.normal(size=(300, 1)) + 1.5 * labels[:, None] - 2.0
  merged = None
  for start in range(0, 300, 64):  # Batches of 64, the last padded with weight 0.
    x, y = logits[start:start + 64], labels[start:start + 64]
    pad = 64 - len(y)
    batch = tasks.BINARY.eval_metrics.single_from_model_output(
        loss=jnp.zeros(64), logits=jnp.asarray(np.pad(x, ((0, pad), (0, 0)))),
        labels=jnp.asarray(np.pad(y, (0, pad), constant_values=1.0)),
        mask=jnp.asarray(np.r_[np.ones(len(y)), np.zeros(pad)]))
    merged = batch if merged is None else merged.merge(batch)
  got = merged.compute()
  predicted = (logits[:, 0] > 0).astype(int)
  assert float(got["balanced_accuracy"]) == pytest.approx(
      metrics.balanced_accuracy_score(labels, predicted), abs=1e-6)
  assert float(got["f1"]) == pytest.approx(metrics.f1_score(labels, predicted), abs=1e-6)
  assert float(got["accuracy"]) > float(got["balanced_accuracy"])  # Accuracy flatters.


def test_top_k_is_reported_only_with_more_classes_than_k():
  config = default_config()
  assert "top5_accuracy" in tasks.metric_names(tasks.make_task(config, 10))
  assert "top5_accuracy" not in tasks.metric_names(tasks.make_task(config, 2))
  config.task = "binary"
  assert tasks.metric_names(tasks.make_task(config, 1)) == [
      "accuracy", "balanced_accuracy", "f1", "loss", "roc_auc"]


def test_targets_that_do_not_suit_the_task_name_the_task_to_use():
  with pytest.raises(ConfigError, match="config.task='classification' needs integer class ids "
                     ">= 0, but the targets are float32 ranging 0.5..2.5; for real-valued "
                     "targets use config.task='regression'"):
    tasks.check_targets(tasks.CLASSIFICATION, np.array([0.5, 2.5], np.float32))
  with pytest.raises(ConfigError, match="config.task='binary' needs 0/1 labels, but the targets "
                     "hold \\[0, 1, 7\\]; for more classes use config.task='classification'"):
    tasks.check_targets(tasks.BINARY, np.array([0, 1, 7]))


def test_unknown_task_is_reported():
  config = ml_collections.ConfigDict(default_config().to_dict())
  config.task = "segmentation"
  with pytest.raises(ConfigError, match="Unknown task 'segmentation' in config.task; choose one "
                     "of \\['binary', 'classification', 'regression'\\]"):
    tasks.make_task(config)
