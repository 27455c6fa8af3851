"""The learning rate: SGD from 1e-4 to 10 on one MLP, the diverging rates shown as such.

  python -m jaxlearn.sweep --study=learning_rate --workdir=/tmp/study_learning_rate

Fashion-MNIST, MLP 784 -> 256 -> 10, plain SGD at a constant rate, 5 epochs, 3
seeds. Every trial differs only in rate and seed, so all 18 train as one
vectorised program; a trial whose loss turns non-finite is masked out and
reported, the others go on.
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
  config.batch_size = 128
  config.num_epochs = 5
  return Study(
      question="What does the learning rate do, from far too small to far too large?",
      config=config,
      grid={"optimizer.learning_rate": [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]},
      seeds=(0, 1, 2),
      failures_expected=True)
