"""A Transformer encoder on MNIST: 16 patches of 7x7 as tokens, [CLS], learned positions.

  python -m jaxlearn.main --config=configs/mnist_transformer.py --workdir=/tmp/mnist_vit

4 pre-LayerNorm blocks of width 64 with 4 heads; AdamW with a one-cycle
schedule. `--config.model.tokens=rows` reads the 28 pixel rows as tokens instead;
`--config.model.position=sinusoidal` uses fixed position codes.
"""

from jaxlearn.config import default_config


def get_config():
  config = default_config()
  config.data.name = "mnist"
  config.model.name = "digit_transformer"
  config.model.tokens = "patches"
  config.model.patch_size = 7
  config.model.dim = 64
  config.model.depth = 4
  config.model.heads = 4
  config.model.mlp_dim = 128
  config.model.dropout = 0.1
  config.model.position = "learned"
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 2e-3  # one_cycle's peak
  config.optimizer.weight_decay = 0.05
  config.schedule.name = "one_cycle"
  config.batch_size = 128
  config.num_epochs = 15
  return config
