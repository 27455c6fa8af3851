"""Task kinds: each picks the loss the step minimises and the metrics it reports.

One training loop serves every task; the task is bound into the step with
`functools.partial(train_step, task=...)`.
"""

from typing import Callable, NamedTuple

from clu import metrics
import jax
import optax

# Step health, reported with the training metrics (averaged over the logged steps).
_HEALTH = {
    "learning_rate": metrics.Average.from_output("learning_rate"),
    "grad_norm": metrics.Average.from_output("grad_norm"),
    "param_norm": metrics.Average.from_output("param_norm"),
}


class Task(NamedTuple):
  """What the step needs to know about a task.

  loss: `(outputs, targets) -> per-example losses`.
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
    "classification", optax.softmax_cross_entropy_with_integer_labels,
    loss=metrics.Average.from_output("loss"), accuracy=metrics.Accuracy)

TASKS = {task.name: task for task in (CLASSIFICATION,)}
