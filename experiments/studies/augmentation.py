"""Augmentation on Fashion-MNIST: none, flips and crops, rotation and translation, erasing.

  python -m jaxlearn.sweep --study=augmentation --workdir=/tmp/study_augmentation

5,000 training images (validation and test full size), a small CNN (conv 16 ->
pool -> conv 32 -> pool -> fc 64 -> fc 10), Adam at 1e-3 with a one-cycle
schedule, 2 seeds, at two budgets: 20 and 60 epochs (augmentation trades the
fit of a short run for less overfitting in a long one). Augmentation is drawn
afresh in every step, on the training batches only.
"""

from jaxlearn.config import default_config
from jaxlearn.sweeps.study import Study


def get_study() -> Study:
  config = default_config()
  config.data.name = "fashion_mnist"
  config.data.max_train_examples = 5000
  config.model.name = "simple_cnn"
  config.model.channels = (16, 32)
  config.model.hidden = 64
  config.model.dropout = 0.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.schedule.name = "one_cycle"
  config.batch_size = 64
  return Study(
      question="Which augmentation helps a small CNN on 5,000 Fashion-MNIST images?",
      config=config,
      settings={
          "none": {"augment.ops": ""},
          "flip_crop": {"augment.ops": "horizontal_flip,random_crop", "augment.crop_padding": 2},
          "rotate_translate": {"augment.ops": "rotation,translation",
                               "augment.max_rotation_degrees": 10.0,
                               "augment.max_translation": 2.0},
          "erasing": {"augment.ops": "random_erasing", "augment.erase_prob": 0.5},
      },
      grid={"num_epochs": [20, 60]},
      seeds=(0, 1))
