"""Optimizers: SGD, momentum, Nesterov, RMSProp, AdaGrad, Adam and AdamW on Fashion-MNIST.

  python -m jaxlearn.sweep --study=optimizers --workdir=/tmp/study_optimizers

One MLP (784 -> 256 -> 10, ReLU), one budget (5 epochs, batch 128, constant
rate), each optimizer at the rate its users start from (PyTorch's examples and
the papers' defaults); 3 seeds each.
"""

from jaxlearn.config import default_config
from jaxlearn.sweeps.study import Study


def get_study() -> Study:
  config = default_config()
  config.data.name = "fashion_mnist"
  config.model.name = "mlp"
  config.model.hidden = (256,)
  config.schedule.name = "constant"
  config.batch_size = 128
  config.num_epochs = 5
  sgd = {"optimizer.name": "sgd"}
  return Study(
      question="Which optimizer trains an MLP on Fashion-MNIST best in 5 epochs?",
      config=config,
      settings={
          "sgd": {**sgd, "optimizer.learning_rate": 0.1},
          "momentum": {**sgd, "optimizer.learning_rate": 0.01, "optimizer.momentum": 0.9},
          "nesterov": {**sgd, "optimizer.learning_rate": 0.01, "optimizer.momentum": 0.9,
                       "optimizer.nesterov": True},
          "rmsprop": {"optimizer.name": "rmsprop", "optimizer.learning_rate": 1e-3},
          "adagrad": {"optimizer.name": "adagrad", "optimizer.learning_rate": 0.01},
          "adam": {"optimizer.name": "adam", "optimizer.learning_rate": 1e-3},
          "adamw": {"optimizer.name": "adamw", "optimizer.learning_rate": 1e-3,
                    "optimizer.weight_decay": 0.01},
      },
      seeds=(0, 1, 2))
