"""Every loss against a numpy implementation of its textbook formula."""

import numpy as np
import pytest

from jaxlearn.core import losses

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 5)).astype(np.float32) * 2
LABELS = RNG.integers(0, 5, 6)
BINARY_LOGITS = RNG.normal(size=(6, 1)).astype(np.float32) * 2
BINARY_LABELS = RNG.integers(0, 2, 6)
PREDICTIONS = RNG.normal(size=(6, 3)).astype(np.float32)
TARGETS = RNG.normal(size=(6, 3)).astype(np.float32)


def _log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _one_hot(labels, k):
  return np.eye(k)[labels]


def test_cross_entropy_with_label_smoothing_matches_numpy():
  for smoothing in (0.0, 0.1):
    targets = _one_hot(LABELS, 5) * (1 - smoothing) + smoothing / 5
    expected = -(targets * _log_softmax(LOGITS)).sum(axis=1)
    np.testing.assert_allclose(losses.cross_entropy(LOGITS, LABELS, label_smoothing=smoothing),
                               expected, rtol=1e-5)


def test_cross_entropy_takes_probability_targets():
  probs = np.exp(_log_softmax(RNG.normal(size=(6, 5))))
  np.testing.assert_allclose(losses.cross_entropy(LOGITS, probs),
                             -(probs * _log_softmax(LOGITS)).sum(axis=1), rtol=1e-5)


def test_binary_cross_entropy_from_logits_matches_numpy():
  p = _sigmoid(BINARY_LOGITS[:, 0])
  expected = -(BINARY_LABELS * np.log(p) + (1 - BINARY_LABELS) * np.log(1 - p))
  np.testing.assert_allclose(losses.binary_cross_entropy(BINARY_LOGITS, BINARY_LABELS), expected,
                             rtol=1e-5)


def test_positive_class_weight_matches_numpy_and_a_traced_setting_equals_a_plain_one():
  import jax  # pylint: disable=import-outside-toplevel
  p = _sigmoid(BINARY_LOGITS[:, 0])
  for weight in (1.0, 3.0, 0.5):
    expected = -(weight * BINARY_LABELS * np.log(p) + (1 - BINARY_LABELS) * np.log(1 - p))
    np.testing.assert_allclose(
        losses.binary_cross_entropy(BINARY_LOGITS, BINARY_LABELS, pos_weight=weight), expected,
        rtol=1e-5)
    # A vectorised sweep traces the setting; 0 smoothing and weight 1 then still change nothing.
    traced = jax.jit(lambda w, s: losses.binary_cross_entropy(
        BINARY_LOGITS, BINARY_LABELS, pos_weight=w, label_smoothing=s))(weight, 0.0)
    np.testing.assert_allclose(traced, expected, rtol=1e-5)
  traced = jax.jit(lambda s: losses.cross_entropy(LOGITS, LABELS, label_smoothing=s))(0.0)
  np.testing.assert_allclose(traced, losses.cross_entropy(LOGITS, LABELS), rtol=1e-6)


def test_regression_losses_match_numpy():
  diff = PREDICTIONS - TARGETS
  np.testing.assert_allclose(losses.mse(PREDICTIONS, TARGETS), (diff**2).mean(axis=1), rtol=1e-5)
  np.testing.assert_allclose(losses.mae(PREDICTIONS, TARGETS), np.abs(diff).mean(axis=1),
                             rtol=1e-5)
  delta = 0.5
  huber = np.where(np.abs(diff) <= delta, 0.5 * diff**2, delta * (np.abs(diff) - 0.5 * delta))
  np.testing.assert_allclose(losses.huber(PREDICTIONS, TARGETS, delta=delta), huber.mean(axis=1),
                             rtol=1e-5)


def test_focal_losses_match_numpy_and_reduce_to_cross_entropy_at_gamma_0():
  p = np.exp(_log_softmax(LOGITS))[np.arange(6), LABELS]
  np.testing.assert_allclose(losses.focal(LOGITS, LABELS, gamma=2.0, alpha=0.25),
                             -0.25 * (1 - p)**2 * np.log(p), rtol=1e-5)
  np.testing.assert_allclose(losses.focal(LOGITS, LABELS, gamma=0.0),
                             losses.cross_entropy(LOGITS, LABELS), rtol=1e-5)
  q = _sigmoid(BINARY_LOGITS[:, 0])
  p_t = np.where(BINARY_LABELS == 1, q, 1 - q)
  alpha_t = np.where(BINARY_LABELS == 1, 0.25, 0.75)
  np.testing.assert_allclose(losses.binary_focal(BINARY_LOGITS, BINARY_LABELS, alpha=0.25),
                             -alpha_t * (1 - p_t)**2 * np.log(p_t), rtol=1e-4)


def test_hinge_losses_match_numpy():
  signs = 2 * BINARY_LABELS - 1
  np.testing.assert_allclose(losses.hinge(BINARY_LOGITS, BINARY_LABELS),
                             np.maximum(0, 1 - signs * BINARY_LOGITS[:, 0]), rtol=1e-5)
  true = LOGITS[np.arange(6), LABELS]
  others = np.where(_one_hot(LABELS, 5) == 1, -np.inf, LOGITS).max(axis=1)
  np.testing.assert_allclose(losses.multiclass_hinge(LOGITS, LABELS),
                             np.maximum(0, 1 + others - true), rtol=1e-5)


def test_dice_loss_matches_numpy():
  logits = RNG.normal(size=(2, 4, 4, 3)).astype(np.float32)
  masks = RNG.integers(0, 3, (2, 4, 4))
  probs = np.exp(_log_softmax(logits))
  onehot = _one_hot(masks, 3)
  intersection = (probs * onehot).sum(axis=(1, 2))
  dice = (2 * intersection + 1) / (probs.sum(axis=(1, 2)) + onehot.sum(axis=(1, 2)) + 1)
  np.testing.assert_allclose(losses.dice(logits, masks), (1 - dice).mean(axis=1), rtol=1e-5)


def test_distillation_kl_with_temperature_matches_numpy():
  teacher = RNG.normal(size=(6, 5)).astype(np.float32)
  t = 4.0
  p_teacher = np.exp(_log_softmax(teacher / t))
  kl = (p_teacher * (np.log(p_teacher) - _log_softmax(LOGITS / t))).sum(axis=1)
  np.testing.assert_allclose(losses.distillation_kl(LOGITS, teacher, temperature=t), t**2 * kl,
                             rtol=1e-4)
  np.testing.assert_allclose(losses.distillation_kl(teacher, teacher, temperature=t), 0, atol=1e-5)


def test_weighted_mean_uses_weights_and_masks():
  values = np.array([1.0, 2.0, 3.0, 100.0], np.float32)
  assert float(losses.weighted_mean(values)) == pytest.approx(26.5)
  assert float(losses.weighted_mean(values, np.array([1, 1, 1, 0]))) == pytest.approx(2.0)
  assert float(losses.weighted_mean(values, np.array([3., 1., 0., 0.]))) == pytest.approx(1.25)


# config.loss.name -> (config.loss settings to set, outputs, targets, the loss called directly).
_SEG_LOGITS = RNG.normal(size=(2, 4, 4, 3)).astype(np.float32)
_SEG_LABELS = RNG.integers(0, 3, (2, 4, 4))
_TEACHER = RNG.normal(size=(6, 5)).astype(np.float32)
BY_NAME = {
    "cross_entropy": ({"label_smoothing": 0.2}, LOGITS, LABELS,
                      lambda o, t: losses.cross_entropy(o, t, label_smoothing=0.2)),
    "focal": ({"gamma": 3.0, "alpha": 0.5}, LOGITS, LABELS,
              lambda o, t: losses.focal(o, t, gamma=3.0, alpha=0.5)),
    "multiclass_hinge": ({}, LOGITS, LABELS, losses.multiclass_hinge),
    "binary_cross_entropy": ({"label_smoothing": 0.2}, BINARY_LOGITS, BINARY_LABELS,
                             lambda o, t: losses.binary_cross_entropy(o, t, label_smoothing=0.2)),
    "binary_focal": ({"gamma": 1.0, "alpha": 0.25}, BINARY_LOGITS, BINARY_LABELS,
                     lambda o, t: losses.binary_focal(o, t, gamma=1.0, alpha=0.25)),
    "hinge": ({}, BINARY_LOGITS, BINARY_LABELS, losses.hinge),
    "mse": ({}, PREDICTIONS, TARGETS, losses.mse),
    "mae": ({}, PREDICTIONS, TARGETS, losses.mae),
    "huber": ({"delta": 0.3}, PREDICTIONS, TARGETS, lambda o, t: losses.huber(o, t, delta=0.3)),
    "dice": ({"smooth": 0.5}, _SEG_LOGITS, _SEG_LABELS,
             lambda o, t: losses.dice(o, t, smooth=0.5)),
    "distillation_kl": ({"temperature": 3.0}, LOGITS, _TEACHER,
                        lambda o, t: losses.distillation_kl(o, t, temperature=3.0)),
}


def test_every_loss_is_reachable_by_name_with_its_settings():
  from jaxlearn.core import tasks  # pylint: disable=import-outside-toplevel
  from jaxlearn.config import default_config  # pylint: disable=import-outside-toplevel
  assert sorted(BY_NAME) == sorted(losses.LOSSES)
  for name, (settings, outputs, targets, direct) in BY_NAME.items():
    config = default_config()
    config.loss.name = name
    config.loss.update(settings)
    built = tasks.make_task(config, 5).loss(outputs, targets)
    np.testing.assert_allclose(built, direct(outputs, targets), rtol=1e-6, err_msg=name)
    # The settings reach the loss: the defaults give another value.
    if settings:
      defaults = tasks.make_task(_with_loss(name), 5).loss(outputs, targets)
      assert not np.allclose(built, defaults), name


def _with_loss(name):
  from jaxlearn.config import default_config  # pylint: disable=import-outside-toplevel
  config = default_config()
  config.loss.name = name
  return config


def test_every_loss_gives_one_value_per_example_for_image_shaped_outputs():
  logits = RNG.normal(size=(2, 4, 4, 3)).astype(np.float32)
  labels = RNG.integers(0, 3, (2, 4, 4))
  for loss in (losses.cross_entropy, losses.focal, losses.multiclass_hinge, losses.dice):
    assert loss(logits, labels).shape == (2,), loss.__name__
  teacher = RNG.normal(size=(2, 4, 4, 3)).astype(np.float32)
  per_pixel = losses.distillation_kl(logits, teacher)
  assert per_pixel.shape == (2,)
  # The mean over each example's pixels of the per-pixel KL.
  p_teacher = np.exp(_log_softmax(teacher))
  kl = (p_teacher * (np.log(p_teacher) - _log_softmax(logits))).sum(axis=-1)
  np.testing.assert_allclose(per_pixel, kl.reshape(2, -1).mean(axis=1), rtol=1e-4)


def test_a_label_outside_the_classes_gives_nan_not_zero():
  labels = LABELS.copy()
  labels[2], labels[4] = 12, -1
  for loss in (losses.cross_entropy, losses.focal, losses.multiclass_hinge):
    values = np.asarray(loss(LOGITS, labels))
    assert np.isnan(values[[2, 4]]).all(), loss.__name__
    assert np.isfinite(np.delete(values, [2, 4])).all(), loss.__name__
