"""LeNet-5 on MNIST (the seed's layout: 61,706 parameters).

  python -m jaxlearn.main --config=configs/mnist_lenet.py --workdir=/tmp/lenet
"""

from jaxlearn.config import default_config


def get_config():
  config = default_config()
  config.data.name = "mnist"
  config.model.name = "lenet5"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.batch_size = 128
  config.num_epochs = 10
  return config
