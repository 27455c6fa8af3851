"""Per-example losses, named as PyTorch names them, built on `optax.losses`.

Every loss maps `(outputs, targets)` to one value per example (shape `[batch]`),
so the step can weight, mask and average them the same way for every task
(`weighted_mean`). An integer label outside the model's classes (12 or -1 for
10 outputs) gives NaN for its example instead of a silent 0: the loop's
non-finite guard then stops the run, naming labels among the likely causes. Keyword arguments are the loss's own settings; a config picks
one with `config.loss.name` and passes the matching `config.loss` fields.
"""

import jax
import jax.numpy as jnp
import optax


def _per_example(values: jax.Array) -> jax.Array:
  """Averages every axis after the batch axis, so each loss returns shape [batch]."""
  return values.reshape(values.shape[0], -1).mean(axis=1) if values.ndim > 1 else values


def _one_hot_like(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Integer labels become one-hot (NaN rows outside the classes); probabilities pass through."""
  if labels.ndim == logits.ndim:
    return labels.astype(logits.dtype)
  one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return jnp.where(_in_classes(labels, logits.shape[-1])[..., None], one_hot, jnp.nan)


def _in_classes(labels: jax.Array, num_classes: int) -> jax.Array:
  return (labels >= 0) & (labels < num_classes)


def _is_zero(setting) -> bool:
  """Whether a loss setting is a plain 0 (skipped); a traced one (a vectorised sweep's
  per-trial value) is always applied, and 0 then changes nothing."""
  return isinstance(setting, (int, float)) and setting == 0


def cross_entropy(logits, labels, *, label_smoothing: float = 0.0):
  """Softmax cross-entropy (torch `CrossEntropyLoss`); integer or probability targets."""
  targets = _one_hot_like(logits, labels)
  if not _is_zero(label_smoothing):
    targets = optax.losses.smooth_labels(targets, label_smoothing)
  return _per_example(optax.losses.softmax_cross_entropy(logits, targets))


def binary_cross_entropy(logits, labels, *, label_smoothing: float = 0.0,
                         pos_weight: float = 1.0):
  """Sigmoid cross-entropy from logits (torch `BCEWithLogitsLoss`); labels in {0, 1}.

  `pos_weight` weighs the positive class's term, as torch's `pos_weight` does:
  -(w y log p + (1 - y) log(1 - p)); above 1 it counters rare positives.
  """
  labels = labels.reshape(logits.shape).astype(logits.dtype)
  if not _is_zero(label_smoothing):  # Towards 1/2, as `smooth_labels` does for two classes.
    labels = labels * (1 - label_smoothing) + label_smoothing / 2
  if isinstance(pos_weight, (int, float)) and pos_weight == 1:
    return _per_example(optax.losses.sigmoid_binary_cross_entropy(logits, labels))
  # optax's form with the positive term weighted (optax has no pos_weight).
  log_p, log_not_p = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
  return _per_example(-pos_weight * labels * log_p - (1.0 - labels) * log_not_p)


def mse(predictions, targets):
  """Squared error (torch `MSELoss`)."""
  return _per_example(optax.losses.squared_error(predictions,
                                                 targets.reshape(predictions.shape)))


def mae(predictions, targets):
  """Absolute error (torch `L1Loss`)."""
  return _per_example(jnp.abs(predictions - targets.reshape(predictions.shape)))


def huber(predictions, targets, *, delta: float = 1.0):
  """Quadratic within `delta`, linear beyond (torch `HuberLoss`)."""
  targets = targets.reshape(predictions.shape)
  return _per_example(optax.losses.huber_loss(predictions, targets, delta=delta))


def focal(logits, labels, *, gamma: float = 2.0, alpha: float | None = None):
  """Multi-class focal loss, -(1 - p_t)^gamma log p_t (Lin et al. 2017), alpha-weighted."""
  targets = _one_hot_like(logits, labels)
  log_p = jax.nn.log_softmax(logits)
  weight = (1 - jnp.exp(log_p)) ** gamma
  if alpha is not None:
    weight = weight * alpha
  return _per_example(-(targets * weight * log_p).sum(axis=-1))


def binary_focal(logits, labels, *, gamma: float = 2.0, alpha: float | None = None):
  """Sigmoid focal loss for binary targets (`optax.losses.sigmoid_focal_loss`)."""
  labels = labels.reshape(logits.shape).astype(logits.dtype)
  return _per_example(optax.losses.sigmoid_focal_loss(logits, labels, alpha=alpha, gamma=gamma))


def hinge(scores, labels):
  """Binary hinge loss max(0, 1 - y s) with labels in {0, 1} (mapped to y = -1, +1)."""
  signs = 2 * labels.reshape(scores.shape).astype(scores.dtype) - 1
  return _per_example(optax.losses.hinge_loss(scores, signs))


def multiclass_hinge(scores, labels):
  """Crammer-Singer hinge: max(0, 1 + max_{j != y} s_j - s_y)."""
  values = optax.losses.multiclass_hinge_loss(scores, labels)
  return _per_example(jnp.where(_in_classes(labels, scores.shape[-1]), values, jnp.nan))


def dice(logits, targets, *, smooth: float = 1.0):
  """1 - Dice coefficient of softmax(logits) and one-hot/probability masks, per example.

  `logits` are [batch, ..., classes]; integer `targets` are [batch, ...].
  """
  targets = _one_hot_like(logits, targets)
  # optax's Tversky form with alpha = beta = 1/2 is (2I + 2s) / (P + T + 2s): halve s to get
  # the usual Dice (2I + s) / (P + T + s).
  per_class = optax.losses.dice_loss(logits, targets, smooth=smooth / 2, reduction="none")
  return per_class.mean(axis=-1)


def distillation_kl(student_logits, teacher_logits, *, temperature: float = 1.0):
  """T^2 * KL(softmax(teacher/T) || softmax(student/T)) (Hinton et al. 2015)."""
  log_student = jax.nn.log_softmax(student_logits / temperature)
  teacher = jax.nn.softmax(teacher_logits / temperature)
  return _per_example(temperature**2 * optax.losses.kl_divergence(log_student, teacher))


def weighted_mean(losses: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """The batch's loss: the mean, or sum(w * l) / sum(w) with per-example weights or a 0/1 mask."""
  if weights is None:
    return losses.mean()
  weights = weights.astype(losses.dtype)
  return (losses * weights).sum() / jnp.maximum(weights.sum(), 1e-12)


# The losses a config can name (config.loss.name), with the settings each takes.
LOSSES = {
    "cross_entropy": (cross_entropy, ("label_smoothing",)),
    "focal": (focal, ("gamma", "alpha")),
    "multiclass_hinge": (multiclass_hinge, ()),
    "binary_cross_entropy": (binary_cross_entropy, ("label_smoothing", "pos_weight")),
    "binary_focal": (binary_focal, ("gamma", "alpha")),
    "hinge": (hinge, ()),
    "mse": (mse, ()),
    "mae": (mae, ()),
    "huber": (huber, ("delta",)),
    "dice": (dice, ("smooth",)),
    # Targets are the teacher's logits (one row per example, as wide as the outputs).
    "distillation_kl": (distillation_kl, ("temperature",)),
}
