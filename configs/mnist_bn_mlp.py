"""A batch-norm MLP (784 -> 256, BatchNorm, ReLU -> 10) on MNIST.

  python -m jaxlearn.main --config=configs/mnist_bn_mlp.py --workdir=/tmp/mnist_bn_mlp

Batch statistics in training, running statistics in evaluation.
"""

from configs import mnist_mlp


def get_config():
  config = mnist_mlp.get_config()
  config.model.hidden = (256,)
  config.model.batch_norm = True
  return config
