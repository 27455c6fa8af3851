"""An MLP (784 -> 128 -> 10, ReLU) on MNIST.

  python -m jaxlearn.main --config=configs/mnist_mlp.py --workdir=/tmp/mnist_mlp

Adam with a one-cycle schedule; see the README for measured figures.
"""

from jaxlearn.config import default_config


def get_config():
  config = default_config()
  config.data.name = "mnist"
  config.model.name = "mlp"
  config.model.hidden = (128,)
  config.model.batch_norm = False
  config.model.layer_norm = False
  config.model.dropout = 0.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3  # one_cycle's peak
  config.schedule.name = "one_cycle"
  config.batch_size = 128
  config.num_epochs = 10
  return config
