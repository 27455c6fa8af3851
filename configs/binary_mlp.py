"""A 2 -> 4 -> 1 classifier (ReLU, sigmoid output) on two interleaved moons.

  python -m jaxlearn.main --config=configs/binary_mlp.py --workdir=/tmp/binary_mlp

Binary cross-entropy from the logit; reports accuracy and ROC-AUC.
"""

from jaxlearn.config import default_config


def get_config():
  config = default_config()
  config.data.name = "two_moons"
  config.data.num_examples = 2000
  config.data.noise_std = 0.1
  config.model.name = "simple_classifier"
  config.model.hidden = 4
  config.task = "binary"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 0.02
  config.batch_size = 32
  config.eval_batch_size = 200
  config.num_epochs = 30
  return config
