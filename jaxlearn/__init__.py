"""jaxlearn: pure Flax NNX models and optax optimizers on a jit/pmap-ready `train_step`."""

from jaxlearn.state import TrainState, create_train_state
from jaxlearn.step import eval_step, train_step
from jaxlearn.tasks import CLASSIFICATION, TASKS, Task

__all__ = ["TrainState", "create_train_state", "train_step", "eval_step", "Task", "TASKS",
           "CLASSIFICATION"]
