"""jaxlearn: pure Flax NNX models and optax optimizers on a jit/pmap-ready `train_step`.

The research surface: build a `TrainState`, compile `train_step` / `eval_step`
yourself, or run the whole loop with `train_and_evaluate(config, workdir)`.
"""

from jaxlearn.state import TrainState, create_train_state
from jaxlearn.step import eval_step, train_step, train_steps
from jaxlearn.tasks import BINARY, CLASSIFICATION, REGRESSION, TASKS, Task, make_task


def __getattr__(name):
  # The loop pulls in data loading, Orbax and TensorBoard: imported on first use only.
  if name == "train_and_evaluate":
    from jaxlearn.train import train_and_evaluate  # pylint: disable=import-outside-toplevel
    return train_and_evaluate
  raise AttributeError(f"module 'jaxlearn' has no attribute {name!r}")

__all__ = ["TrainState", "create_train_state", "train_step", "train_steps", "eval_step", "Task",
           "TASKS", "CLASSIFICATION", "BINARY", "REGRESSION", "make_task", "train_and_evaluate"]
