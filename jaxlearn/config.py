"""The base config every experiment in `configs/` starts from.

Every key jaxlearn reads is defined here with its default, so a misspelled
`--config.x.y=v` override fails loudly (configs are locked) instead of being
silently ignored.
"""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  """Returns the base config; experiments change a few fields of it."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist"
  # ROOT holding ROOT/<name>/ raw files; empty: env JAXLEARN_DATA_DIR, then TFDS.
  config.data.dir = ""
  config.data.source = "auto"  # auto | local | tfds
  config.data.tfds_data_dir = ""  # TFDS cache dir; empty: TFDS's default
  config.data.val_fraction = 0.1  # held out from the training split
  # "a:b:c" pools every labelled example and splits it train:val:test
  # (e.g. "7:2:1"); empty keeps the dataset's own test split.
  config.data.split_ratios = ""
  config.data.max_train_examples = 0  # 0: all; a prefix, for quick trials
  config.data.mean = (0.1307,)  # per channel, on [0, 1] pixels
  config.data.std = (0.3081,)

  config.model = ml_collections.ConfigDict()
  config.model.name = "lenet5"
  config.model.num_classes = 10

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.momentum = 0.9  # sgd (0 turns it off), rmsprop
  config.optimizer.nesterov = False
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 0.0

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "constant"
  config.schedule.warmup_epochs = 0.0
  config.schedule.min_lr = 0.0  # cosine's eta_min
  config.schedule.pct_start = 0.3  # one_cycle
  config.schedule.div_factor = 25.0  # one_cycle
  config.schedule.final_div_factor = 1e4  # one_cycle

  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_epochs = 10

  # The validation metric that picks the best checkpoint.
  config.monitor = "accuracy"
  config.monitor_mode = "max"  # max | min

  config.log_every_steps = 100
  config.progress_bar = True
  return config
