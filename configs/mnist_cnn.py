"""A small CNN (conv 32@3x3 -> max-pool -> fc 10; 63,050 parameters) on MNIST.

  python -m jaxlearn.main --config=configs/mnist_cnn.py --workdir=/tmp/mnist_cnn
"""

from jaxlearn.config import default_config


def get_config():
  config = default_config()
  config.data.name = "mnist"
  config.model.name = "simple_cnn"
  config.model.channels = (32,)
  config.model.hidden = 0
  config.model.dropout = 0.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3  # one_cycle's peak
  config.schedule.name = "one_cycle"
  config.batch_size = 128
  config.num_epochs = 5
  return config
