"""Initialisation of a deep MLP: zeros, normal(0.01), Xavier and Kaiming, with ReLU and tanh.

  python -m jaxlearn.sweep --study=initialisation --workdir=/tmp/study_initialisation

Fashion-MNIST, an MLP of 8 hidden layers of 128 units, SGD with momentum 0.9 at
0.01, 3 epochs, 2 seeds. Biases start at zero in every scheme (the layers'
own). Each trial is a single run, so each records its layers' gradient norms
(layer_stats.jsonl) and its diagnosis names a vanishing signal.
"""

from jaxlearn.config import default_config
from jaxlearn.sweeps.study import Study


def get_study() -> Study:
  config = default_config()
  config.data.name = "fashion_mnist"
  config.model.name = "mlp"
  config.model.hidden = (128,) * 8
  config.model.activation = "relu"
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.learning_rate = 0.01
  config.schedule.name = "constant"
  config.batch_size = 128
  config.num_epochs = 3
  config.init.normal_stddev = 0.01
  return Study(
      question="How much does the initial scale of the weights matter in a deep network?",
      config=config,
      grid={"model.activation": ["relu", "tanh"],
            "init.linear": ["zeros", "normal", "xavier_normal", "kaiming_normal"]},
      seeds=(0, 1),
      vectorise=False)
