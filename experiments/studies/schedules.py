"""Learning-rate schedules: constant, step decay, cosine, one-cycle and linear warm-up.

  python -m jaxlearn.sweep --study=schedules --workdir=/tmp/study_schedules

Fashion-MNIST, MLP 784 -> 256 -> 10, SGD with momentum 0.9 at a peak rate of
0.05, 10 epochs, 3 seeds. Each schedule reaches the same peak; step decay
multiplies it by 0.2 every 3 epochs; warm-up rises linearly over 2 epochs, then
holds.
"""

from jaxlearn.config import default_config
from jaxlearn.sweeps.study import Study


def get_study() -> Study:
  config = default_config()
  config.data.name = "fashion_mnist"
  config.model.name = "mlp"
  config.model.hidden = (256,)
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.learning_rate = 0.05
  config.batch_size = 128
  config.num_epochs = 10
  return Study(
      question="Does the learning-rate schedule matter, at the same peak rate and budget?",
      config=config,
      settings={
          "constant": {"schedule.name": "constant"},
          "step": {"schedule.name": "step", "schedule.step_size": 3, "schedule.gamma": 0.2},
          "cosine": {"schedule.name": "cosine"},
          "one_cycle": {"schedule.name": "one_cycle"},
          "warmup": {"schedule.name": "constant", "schedule.warmup_epochs": 2.0},
      },
      seeds=(0, 1, 2))
