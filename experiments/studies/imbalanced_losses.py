"""Losses for imbalanced binary data: cross-entropy, weighted cross-entropy and focal loss.

  python -m jaxlearn.sweep --study=imbalanced_losses --workdir=/tmp/study_imbalanced_losses

Fashion-MNIST as "shirt or not" (`data.positive_class=6`: 1 positive in 10),
an MLP 784 -> 256 -> 1, Adam at 1e-3, 5 epochs, 3 seeds. Each trial keeps its
best epoch by balanced accuracy (the mean of the recall on shirts and on the
rest), which a model that never says "shirt" cannot inflate as it does
accuracy. Weighted cross-entropy counts each shirt 9 times (negatives /
positives); focal loss (gamma 2) down-weights the easy examples.
"""

from jaxlearn.config import default_config
from jaxlearn.sweeps.study import Study


def get_study() -> Study:
  config = default_config()
  config.data.name = "fashion_mnist"
  config.data.positive_class = 6
  config.task = "binary"
  config.monitor = "balanced_accuracy"
  config.model.name = "mlp"
  config.model.hidden = (256,)
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.schedule.name = "constant"
  config.batch_size = 128
  config.num_epochs = 5
  return Study(
      question="Which loss finds the rare class in imbalanced binary data?",
      config=config,
      settings={
          "bce": {"loss.name": "binary_cross_entropy"},
          "weighted_bce": {"loss.name": "binary_cross_entropy", "loss.pos_weight": 9.0},
          "focal": {"loss.name": "binary_focal", "loss.gamma": 2.0},
      },
      seeds=(0, 1, 2),
      also=("accuracy", "f1", "roc_auc"))
