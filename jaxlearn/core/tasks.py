"""Task kinds: each picks the loss the step minimises, the metrics it reports, its targets.

One training loop serves every task; the task is bound into the step with
`functools.partial(train_step, task=...)`. `make_task(config, num_outputs)`
builds the configured one, with `config.loss` choosing another loss than the
task's own.

- classification: integer labels, one logit per class; loss, accuracy, top-k.
- binary: 0/1 labels, one logit; loss, accuracy (logit > 0), ROC-AUC.
- regression: real targets, one output per target; loss, MSE, MAE, R^2.
"""

import functools
from typing import Callable, NamedTuple

from clu import metrics
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxlearn.core import losses
from jaxlearn.errors import ConfigError

AUC_BINS = 4096


def _per_step_average(name: str) -> type[metrics.Average]:
  """The mean of a per-step scalar over the logged steps; batch masks do not apply to it."""

  @flax.struct.dataclass
  class PerStepAverage(metrics.Average):

    @classmethod
    def from_model_output(cls, **model_output) -> metrics.Average:
      value = jnp.asarray(model_output[name], jnp.float32)
      return cls(total=value.sum(), count=jnp.ones((), jnp.int32))

  return PerStepAverage


# Step health, reported with the training metrics. `nonfinite` is 1 for a step
# whose loss or gradient was NaN/Inf (skipped when config.on_nonfinite='skip').
_HEALTH = {name: _per_step_average(name)
           for name in ("learning_rate", "grad_norm", "param_norm", "nonfinite")}


@flax.struct.dataclass
class WeightedAverage(metrics.Average):
  """sum(w * value) / sum(w) over examples, where w are the batch's per-example "weights".

  clu's `Average` treats its mask as 0/1; this one weights, so the metrics agree
  with the weighted loss the step minimises (0/1 weights give the same values).
  """

  @classmethod
  def from_model_output(cls, values: jax.Array, mask: jax.Array | None = None,
                        **_) -> "WeightedAverage":
    values = jnp.asarray(values, jnp.float32)
    weights = jnp.ones_like(values) if mask is None else jnp.asarray(mask, jnp.float32)
    weights = weights.reshape(weights.shape + (1,) * (values.ndim - weights.ndim))
    weights = jnp.broadcast_to(weights, values.shape)
    # `where`, not a product: a skipped step's NaN loss with weight 0 must add nothing.
    return cls(total=jnp.where(weights > 0, values * weights, 0.0).sum(), count=weights.sum())


def _correct(*, logits, labels, **_):
  return (logits.argmax(axis=-1) == labels).astype(jnp.float32)


def top_k_accuracy(k: int) -> type[metrics.Average]:
  """The (weighted) fraction of examples whose label is among the k largest logits."""

  def correct(*, logits, labels, **_):
    top = jax.lax.top_k(logits, k)[1]
    return (top == labels[:, None]).any(axis=-1).astype(jnp.float32)

  return WeightedAverage.from_fun(correct)


def _binary_correct(*, logits, labels, **_):
  return ((logits.reshape(-1) > 0) == (labels.reshape(-1) > 0.5)).astype(jnp.float32)


def _squared_error(*, logits, labels, **_):
  return losses.mse(logits, labels)


def _absolute_error(*, logits, labels, **_):
  return losses.mae(logits, labels)


@flax.struct.dataclass
class RocAuc(metrics.Metric):
  """Area under the ROC curve from histograms of sigmoid(logit) per class.

  Histograms add up over batches and devices (as Keras's AUC, which uses 200
  thresholds); pairs that fall in the same of the `AUC_BINS` bins count half,
  so the value is within ~1e-3 of the exact rank statistic.
  """
  positives: jax.Array
  negatives: jax.Array

  @classmethod
  def from_model_output(cls, *, logits, labels, mask=None, **_) -> "RocAuc":
    scores = jax.nn.sigmoid(logits.reshape(-1).astype(jnp.float32))
    bins = jnp.clip((scores * AUC_BINS).astype(jnp.int32), 0, AUC_BINS - 1)
    weight = jnp.ones_like(scores) if mask is None else mask.reshape(-1).astype(jnp.float32)
    positive = labels.reshape(-1) > 0.5
    histogram = lambda w: jnp.zeros(AUC_BINS, jnp.float32).at[bins].add(w)
    return cls(positives=histogram(weight * positive), negatives=histogram(weight * ~positive))

  def merge(self, other: "RocAuc") -> "RocAuc":
    return type(self)(self.positives + other.positives, self.negatives + other.negatives)

  def compute(self) -> jax.Array:
    negatives_below = jnp.cumsum(self.negatives) - self.negatives
    ordered_pairs = jnp.sum(self.positives * (negatives_below + 0.5 * self.negatives))
    return ordered_pairs / (self.positives.sum() * self.negatives.sum())


@flax.struct.dataclass
class BinaryCounts(metrics.Metric):
  """True/false positives and negatives at logit 0 (probability 1/2), weighted, summed over
  batches; subclasses compute a figure that, unlike accuracy, imbalance cannot inflate."""
  true_positives: jax.Array
  false_positives: jax.Array
  false_negatives: jax.Array
  true_negatives: jax.Array

  @classmethod
  def from_model_output(cls, *, logits, labels, mask=None, **_) -> "BinaryCounts":
    predicted = logits.reshape(-1) > 0
    actual = labels.reshape(-1) > 0.5
    weight = jnp.ones(predicted.shape) if mask is None else mask.reshape(-1).astype(jnp.float32)
    count = lambda p, a: jnp.sum(weight * ((predicted == p) & (actual == a)))
    return cls(count(True, True), count(True, False), count(False, True), count(False, False))

  def merge(self, other: "BinaryCounts") -> "BinaryCounts":
    return jax.tree.map(jnp.add, self, other)


@flax.struct.dataclass
class BalancedAccuracy(BinaryCounts):
  """The mean of the recall on positives and on negatives (sklearn's balanced_accuracy)."""

  def compute(self) -> jax.Array:
    recall = self.true_positives / jnp.maximum(self.true_positives + self.false_negatives, 1e-12)
    specificity = self.true_negatives / jnp.maximum(self.true_negatives + self.false_positives,
                                                    1e-12)
    return (recall + specificity) / 2


@flax.struct.dataclass
class PositiveF1(BinaryCounts):
  """F1 of the positive class: 2 TP / (2 TP + FP + FN) (sklearn's f1_score)."""

  def compute(self) -> jax.Array:
    tp2 = 2 * self.true_positives
    return tp2 / jnp.maximum(tp2 + self.false_positives + self.false_negatives, 1e-12)


@flax.struct.dataclass
class RSquared(metrics.Metric):
  """1 - SSE / SST over every (unmasked) target, from running sums."""
  squared_error: jax.Array
  total: jax.Array
  total_squares: jax.Array
  count: jax.Array

  @classmethod
  def from_model_output(cls, *, logits, labels, mask=None, **_) -> "RSquared":
    y = labels.reshape(logits.shape).astype(jnp.float32)
    weight = jnp.ones(y.shape[0]) if mask is None else mask.astype(jnp.float32)
    weight = weight.reshape(-1, *([1] * (y.ndim - 1)))
    return cls(squared_error=jnp.sum(weight * (logits - y)**2), total=jnp.sum(weight * y),
               total_squares=jnp.sum(weight * y**2),
               count=jnp.sum(weight * jnp.ones_like(y)))

  def merge(self, other: "RSquared") -> "RSquared":
    return jax.tree.map(jnp.add, self, other)

  def compute(self) -> jax.Array:
    sst = self.total_squares - self.total**2 / self.count
    return 1.0 - self.squared_error / sst


class Task(NamedTuple):
  """What the step needs to know about a task.

  loss: `(outputs, targets) -> per-example losses` (see `jaxlearn.core.losses`).
  eval_metrics: a clu `Collection` built from `loss=, logits=, labels=, mask=`
    (`mask` carries the batch's per-example "weights").
  train_metrics: the same plus learning rate, gradient and parameter norms.
  target_dtype: what targets are cast to before training.
  num_outputs: `targets -> ` the model's output size (classes, or target width).
  """
  name: str
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  eval_metrics: type[metrics.Collection]
  train_metrics: type[metrics.Collection]
  target_dtype: type = np.int32
  num_outputs: Callable[[np.ndarray], int] = lambda targets: int(targets.max()) + 1


def _make_task(name, loss_fn, target_dtype, num_outputs, **eval_fields) -> Task:
  loss = WeightedAverage.from_output("loss")
  return Task(name, loss_fn, metrics.Collection.create(loss=loss, **eval_fields),
              metrics.Collection.create(loss=loss, **eval_fields, **_HEALTH),
              target_dtype, num_outputs)


def _target_width(targets: np.ndarray) -> int:
  return int(np.prod(targets.shape[1:]))


CLASSIFICATION = _make_task("classification", losses.cross_entropy, np.int32,
                            lambda targets: int(targets.max()) + 1,
                            accuracy=WeightedAverage.from_fun(_correct))
BINARY = _make_task("binary", losses.binary_cross_entropy, np.float32, lambda targets: 1,
                    accuracy=WeightedAverage.from_fun(_binary_correct), roc_auc=RocAuc,
                    balanced_accuracy=BalancedAccuracy, f1=PositiveF1)
REGRESSION = _make_task("regression", losses.mse, np.float32, _target_width,
                        mse=WeightedAverage.from_fun(_squared_error),
                        mae=WeightedAverage.from_fun(_absolute_error), r2=RSquared)

TASKS = {task.name: task for task in (CLASSIFICATION, BINARY, REGRESSION)}


def check_task_name(name: str) -> None:
  if name not in TASKS:
    raise ConfigError(f"Unknown task {name!r} in config.task; choose one of {sorted(TASKS)}.")


def check_targets(task: Task, targets: np.ndarray) -> None:
  """Fails with the task to use when targets do not suit `task`."""
  targets = np.asarray(targets)
  if task.name == "classification" and (targets.dtype.kind not in "iub" or targets.min() < 0):
    raise ConfigError(f"config.task='classification' needs integer class ids >= 0, but the "
                      f"targets are {targets.dtype} ranging {targets.min()}..{targets.max()}; "
                      "for real-valued targets use config.task='regression'.")
  if task.name == "binary" and not np.isin(targets, (0, 1)).all():
    raise ConfigError(f"config.task='binary' needs 0/1 labels, but the targets hold "
                      f"{np.unique(targets)[:10].tolist()}; for more classes use "
                      "config.task='classification', for real values 'regression'.")
  if targets.dtype.kind not in "iufb":
    raise ConfigError(f"Targets of dtype {targets.dtype} cannot be trained on; use numbers.")


def make_loss(config, loss_settings: dict | None = None):
  """`config.loss.name` (empty: `config.task`'s own) with its settings from `config.loss`,
  some replaced by `loss_settings` (e.g. a traced label smoothing, see
  `jaxlearn.sweeps.vectorised`)."""
  check_task_name(config.task)
  name = config.loss.name or TASKS[config.task].loss.__name__
  if name not in losses.LOSSES:
    raise ConfigError(f"Unknown loss {name!r} in config.loss.name; choose one of "
                      f"{sorted(losses.LOSSES)}.")
  loss_fn, settings = losses.LOSSES[name]
  chosen = {k: config.loss[k] for k in settings}
  chosen.update({k: v for k, v in (loss_settings or {}).items() if k in settings})
  return functools.partial(loss_fn, **chosen)


def make_task(config, num_outputs: int = 0) -> Task:
  """`config.task` with the loss `config.loss.name` (empty: the task's own) and its settings.

  A classifier with more than `config.top_k` outputs also reports
  `top{k}_accuracy`.

  >>> from jaxlearn.config import default_config
  >>> config = default_config()
  >>> config.loss.label_smoothing = 0.1
  >>> task = make_task(config, num_outputs=10)
  >>> task.name, metric_names(task)
  ('classification', ['accuracy', 'loss', 'top5_accuracy'])
  """
  loss = make_loss(config)  # Checks config.task and config.loss.name first.
  task = TASKS[config.task]._replace(loss=loss)
  if task.name == "classification" and 0 < config.top_k < num_outputs:
    extra = {f"top{config.top_k}_accuracy": top_k_accuracy(config.top_k)}
    task = task._replace(
        eval_metrics=metrics.Collection.create(**task.eval_metrics.__annotations__, **extra),
        train_metrics=metrics.Collection.create(**task.train_metrics.__annotations__, **extra))
  return task


def metric_names(task: Task) -> list[str]:
  """The validation metrics `task` reports (what config.monitor may name)."""
  return sorted(task.eval_metrics.__annotations__)
