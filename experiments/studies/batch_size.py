"""Batch size against learning rate: SGD with batches of 32, 128 and 512 at four rates.

  python -m jaxlearn.sweep --study=batch_size --workdir=/tmp/study_batch_size

Fashion-MNIST, MLP 784 -> 256 -> 10, SGD at a constant rate, 3 epochs (so a
batch of 512 takes 16 times fewer steps than one of 32), 2 seeds. The rates and
seeds of one batch size train as one vectorised program.
"""

from jaxlearn.config import default_config
from jaxlearn.sweeps.study import Study


def get_study() -> Study:
  config = default_config()
  config.data.name = "fashion_mnist"
  config.model.name = "mlp"
  config.model.hidden = (256,)
  config.optimizer.name = "sgd"
  config.schedule.name = "constant"
  config.num_epochs = 3
  return Study(
      question="How do batch size and learning rate trade off for a fixed number of epochs?",
      config=config,
      grid={"batch_size": [32, 128, 512],
            "optimizer.learning_rate": [0.01, 0.03, 0.1, 0.3]},
      seeds=(0, 1),
      smoke={"data.max_train_examples": 1024})
