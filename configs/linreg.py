"""Linear regression (one linear layer, MSE) on generated data with known weights.

  python -m jaxlearn.main --config=configs/linreg.py --workdir=/tmp/linreg

y = x . (2, -3.4) + 4.2 + N(0, 0.01^2) on 1,000 examples split 7:2:1; plain SGD
recovers the true weights and bias (the fitted values are in the best
checkpoint's `linear.kernel` / `linear.bias`).
"""

from jaxlearn.config import default_config


def get_config():
  config = default_config()
  config.data.name = "synthetic_linear"
  config.data.num_examples = 1000
  config.data.true_weights = (2.0, -3.4)
  config.data.true_bias = 4.2
  config.data.noise_std = 0.01
  config.model.name = "linear_regression"
  config.task = "regression"
  config.monitor = "loss"
  config.monitor_mode = "min"
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.0
  config.optimizer.learning_rate = 0.03
  config.batch_size = 10
  config.eval_batch_size = 100
  config.num_epochs = 5
  return config
