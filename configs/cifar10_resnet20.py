"""ResNet-20 (He et al. 2016, with 1x1 projection shortcuts) on CIFAR-10.

  python -m jaxlearn.main --config=configs/cifar10_resnet20.py --workdir=/tmp/resnet20

The paper's recipe: SGD momentum 0.9, lr 0.1, weight decay 1e-4, batch 128,
random crop (pad 4) + horizontal flip, 180 epochs (here with a cosine schedule).
Reads ROOT/cifar10/ (the binary version) or TFDS `cifar10`; a GPU run is
expected to reach about 91-92% test accuracy (He et al. report 91.25%).
"""

from jaxlearn.config import default_config


def get_config():
  config = default_config()
  config.data.name = "cifar10"
  config.data.val_fraction = 0.1
  config.augment.ops = "random_crop,horizontal_flip"
  config.augment.crop_padding = 4
  config.model.name = "resnet20"
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.learning_rate = 0.1
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "cosine"
  config.schedule.warmup_epochs = 1.0
  config.batch_size = 128
  config.num_epochs = 180
  return config
