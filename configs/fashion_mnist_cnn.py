"""A two-block CNN (conv 32 -> pool -> conv 64 -> pool -> fc 128 -> fc 10) on Fashion-MNIST.

  python -m jaxlearn.main --config=configs/fashion_mnist_cnn.py --workdir=/tmp/fashion_cnn

Dropout before each fully connected layer; normalisation fitted on the train
split. See the README for the measured test accuracy.
"""

from configs import mnist_cnn


def get_config():
  config = mnist_cnn.get_config()
  config.data.name = "fashion_mnist"
  config.model.channels = (32, 64)
  config.model.hidden = 128
  config.model.dropout = 0.3
  config.num_epochs = 15
  return config
