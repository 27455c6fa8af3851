"""ResNet-18 (CIFAR stem: 3x3 conv, no max-pool; 11.2 M parameters) on CIFAR-10.

  python -m jaxlearn.main --config=configs/cifar10_resnet18.py --workdir=/tmp/resnet18

SGD momentum 0.9, lr 0.1, weight decay 5e-4, cosine over 200 epochs, random
crop + flip. A GPU run is expected to reach about 95% test accuracy.
"""

from configs import cifar10_resnet20


def get_config():
  config = cifar10_resnet20.get_config()
  config.model.name = "resnet18"
  config.optimizer.weight_decay = 5e-4
  config.num_epochs = 200
  return config
