"""Task kinds: each picks the loss the step minimises and the metrics it reports.

One training loop serves every task; the task is bound into the step with
`functools.partial(train_step, task=...)`. `make_task(config)` builds the
configured one, with `config.loss` choosing another loss than the task's own.
"""

import functools
from typing import Callable, NamedTuple

from clu import metrics
import flax.struct
import jax
import jax.numpy as jnp

from jaxlearn import losses
from jaxlearn.errors import ConfigError


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


class Task(NamedTuple):
  """What the step needs to know about a task.

  loss: `(outputs, targets) -> per-example losses` (see `jaxlearn.losses`).
  eval_metrics: a clu `Collection` built from `loss=, logits=, labels=, mask=`.
  train_metrics: the same plus learning rate, gradient and parameter norms.
  """
  name: str
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  eval_metrics: type[metrics.Collection]
  train_metrics: type[metrics.Collection]


def _make_task(name, loss_fn, **eval_fields) -> Task:
  return Task(name, loss_fn, metrics.Collection.create(**eval_fields),
              metrics.Collection.create(**eval_fields, **_HEALTH))


CLASSIFICATION = _make_task(
    "classification", losses.cross_entropy,
    loss=metrics.Average.from_output("loss"), accuracy=metrics.Accuracy)

TASKS = {task.name: task for task in (CLASSIFICATION,)}


def make_task(config) -> Task:
  """`config.task` with the loss `config.loss.name` (empty: the task's own) and its settings."""
  if config.task not in TASKS:
    raise ConfigError(f"Unknown task {config.task!r} in config.task; choose one of "
                      f"{sorted(TASKS)}.")
  task = TASKS[config.task]
  name = config.loss.name or task.loss.__name__
  if name not in losses.LOSSES:
    raise ConfigError(f"Unknown loss {name!r} in config.loss.name; choose one of "
                      f"{sorted(losses.LOSSES)}.")
  loss_fn, settings = losses.LOSSES[name]
  return task._replace(loss=functools.partial(loss_fn, **{k: config.loss[k] for k in settings}))
