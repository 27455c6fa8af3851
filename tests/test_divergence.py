"""Divergence without a NaN: the README's old lr-0.05 run must not end "completed"."""

import json

import numpy as np
import pytest

from jaxlearn.config import default_config
from jaxlearn.errors import DivergedError
from jaxlearn.training import divergence, train


def _history(train_losses, val_accuracies):
  return [{"epoch": i + 1, "train_loss": l, "val_accuracy": a}
          for i, (l, a) in enumerate(zip(train_losses, val_accuracies))]


def test_chance_is_the_most_common_class_share():
  assert divergence.chance_accuracy("classification", np.array([0, 1, 1, 2])) == 0.5
  assert divergence.chance_accuracy("binary", np.array([[1.0], [0.0], [1.0], [1.0]])) == 0.75
  assert divergence.chance_accuracy("regression", np.array([0.3, 1.2])) is None


def test_an_epoch_diverges_on_loss_far_above_best_or_accuracy_at_chance():
  # The README's old example: val accuracy 95.7% -> ~10% while the loss climbs.
  history = _history([0.35, 0.12, 2.30], [0.957, 0.97, 0.101])
  reason = divergence.epoch_reason(history, chance=0.1135, loss_factor=3.0)
  assert "train loss 2.3, above 3x its best 0.12 (epoch 2)" in reason
  assert "val accuracy 0.1010, at chance (0.1135" in reason
  # A noisy near-zero regression loss is no divergence: it stays below its first epoch's.
  assert divergence.epoch_reason(_history([5.0, 1e-4, 4e-4], [0, 0, 0]), None, 3.0) == ""
  # A classifier that never left chance has not diverged (it never learned).
  assert divergence.epoch_reason(_history([2.3, 2.3], [0.11, 0.11]), 0.11, 3.0) == ""


def test_the_run_stops_after_patience_diverged_epochs():
  config = default_config()
  history = _history([0.5, 0.1, 2.3, 0.09], [0.9, 0.95, 0.1, 0.96])
  assert divergence.stop_reason(history[:3], 0.1, config) == ""  # One epoch: patience 2.
  history = _history([0.5, 0.1, 2.3, 2.31], [0.9, 0.95, 0.1, 0.1])
  assert divergence.stop_reason(history, 0.1, config).startswith("diverged: train loss 2.31")
  assert divergence.stop_reason(history, 0.1, config).endswith("for 2 epochs in a row")
  config.divergence.patience = 0
  assert divergence.stop_reason(history, 0.1, config) == ""


def test_a_diverging_run_stops_tests_its_best_and_raises(small_config, tmp_path, monkeypatch):
  """Validation scripted to fall to chance from epoch 3: the loop stops after epoch 4."""
  real_evaluate = train.evaluate
  scripted = iter([0.9, 0.95, 0.1, 0.1, 0.1, 0.1])

  def evaluate(eval_batch, state, batches):
    metrics = real_evaluate(eval_batch, state, batches)
    if len(batches["inputs"]) == 1:  # Validation: 64 examples, one batch of 80 (test: two).
      metrics["accuracy"] = next(scripted)
    return metrics

  monkeypatch.setattr(train, "evaluate", evaluate)
  small_config.num_epochs = 6
  workdir = tmp_path / "run"
  with pytest.raises(DivergedError, match=r"^Training diverged: val accuracy 0\.1000, at chance .*"
                     r"for 2 epochs in a row \(stopped after epoch 4\)\. The best checkpoint, "
                     r"from epoch 2, was tested .*--config\.optimizer\.learning_rate=0\.00333"):
    train.train_and_evaluate(small_config, str(workdir))
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["epochs_run"] == 4 and summary["best_epoch"] == 2
  assert summary["stop_reason"].startswith("diverged:")
