"""Regularisation on a small training set: none, dropout, weight decay and batch norm.

  python -m jaxlearn.sweep --study=regularisation --workdir=/tmp/study_regularisation

2,000 Fashion-MNIST training images (validation and test keep their full
size), an MLP 784 -> 512 -> 512 -> 10 with Adam at 1e-3, 40 epochs, 3 seeds:
long enough to overfit. The table's train_accuracy (at the best epoch) against
best_val_accuracy is the gap each remedy closes or not.
"""

from jaxlearn.config import default_config
from jaxlearn.sweeps.study import Study


def get_study() -> Study:
  config = default_config()
  config.data.name = "fashion_mnist"
  config.data.max_train_examples = 2000
  config.model.name = "mlp"
  config.model.hidden = (512, 512)
  config.model.dropout = 0.0
  config.model.batch_norm = False
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.0
  config.schedule.name = "constant"
  config.batch_size = 64
  config.num_epochs = 40
  return Study(
      question="What closes the gap between training and validation on a small training set?",
      config=config,
      settings={
          "none": {},
          "dropout_0.5": {"model.dropout": 0.5},
          "weight_decay_0.1": {"optimizer.weight_decay": 0.1},
          "batch_norm": {"model.batch_norm": True},
      },
      seeds=(0, 1, 2),
      smoke={"data.max_train_examples": 256})
