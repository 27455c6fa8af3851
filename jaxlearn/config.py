"""The base config every experiment in `configs/` starts from, and its checks.

Every key jaxlearn reads is defined here with its default, so a misspelled
`--config.x.y=v` override fails loudly (configs are locked) instead of being
silently ignored; `validate` rejects values that cannot work before a run
writes anything.
"""

import ml_collections

from jaxlearn.errors import ConfigError

PRECISIONS = ("fp32", "bf16")  # config.precision; see jaxlearn.build.COMPUTE_DTYPES
QUANTIZATIONS = ("none", "int8_qat")  # config.quantization; see jaxlearn.qat
SHARDINGS = ("replicated", "fsdp")  # config.sharding; see jaxlearn.parallel


def default_config() -> ml_collections.ConfigDict:
  """Returns the base config; experiments change a few fields of it."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist"
  # ROOT holding ROOT/<name>/ raw files; empty: env JAXLEARN_DATA_DIR, else the download
  # cache ~/.cache/jaxlearn/data. Missing files are downloaded into ROOT/<name>/ (auto);
  # local: never download; tfds: read TensorFlow Datasets instead.
  config.data.dir = ""
  config.data.source = "auto"  # auto | local | tfds
  # Where downloads come from instead of the datasets' own sites: MIRROR/<name>/<file>.
  # Empty: env JAXLEARN_DATA_MIRROR, else the canonical URLs.
  config.data.mirror = ""
  config.data.tfds_data_dir = ""  # TFDS cache dir; empty: TFDS's default
  config.data.val_fraction = 0.1  # held out from the training split
  # "a:b:c" pools every labelled example and splits it train:val:test
  # (e.g. "7:2:1"); empty keeps the dataset's own test split.
  config.data.split_ratios = ""
  config.data.max_train_examples = 0  # 0: all; a prefix, for quick trials
  # Images: per-channel mean/std on [0, 1] pixels; empty: fitted on the train split.
  config.data.mean = ()
  config.data.std = ()
  # Text: a word vocabulary built on the train split; sequences padded/truncated.
  config.data.max_length = 64
  config.data.vocab_size = 20000  # counting padding and unknown-word ids
  config.data.min_count = 1  # words seen fewer times in train are unknown
  # The dataset's file or folder: a table (name "csv"), a folder of class subfolders
  # ("image_folder"), or one written by `python -m jaxlearn.data.records` ("array_record").
  config.data.path = ""
  # image_folder: every image decoded to (height, width) (empty: the first image's size, which
  # all must share) with 1 (grey) or 3 (RGB) channels (0: as the first image).
  config.data.image_size = ()
  config.data.channels = 0
  # How training batches are made: "memory" reads the training split into the devices'
  # memory once (small datasets); "grain" streams it from the source with Grain, decoded in
  # `data.workers` worker processes, each process reading only its shard
  # (jaxlearn.data.streaming). Validation and test splits are read into memory either way.
  config.data.pipeline = "memory"
  config.data.workers = 2
  # Tables: the column to predict, columns to ignore ("a,b").
  config.data.target_column = ""
  config.data.drop_columns = ""
  # Generated data (synthetic_linear, two_moons).
  config.data.num_examples = 1000
  config.data.true_weights = (2.0, -3.4)  # synthetic_linear: y = x . w + b + noise
  config.data.true_bias = 4.2
  config.data.noise_std = 0.01

  # Image augmentation inside the compiled step, on the accelerator: ops
  # applied in order, comma-separated (see jaxlearn.data.augment), e.g.
  # "random_crop,horizontal_flip". Empty: none.
  config.augment = ml_collections.ConfigDict()
  config.augment.ops = ""
  config.augment.crop_padding = 4
  config.augment.max_rotation_degrees = 15.0
  config.augment.max_translation = 2.0  # pixels
  config.augment.noise_std = 0.1  # on normalised pixels
  config.augment.erase_prob = 0.5
  config.augment.erase_max_area = 0.2  # fraction of the image

  config.model = ml_collections.ConfigDict()
  config.model.name = "lenet5"
  # Other model fields are the model's own arguments (set by each experiment);
  # sizes the data determines (in_features, in_channels, vocab_size, num_classes)
  # are filled in from it unless set here.

  # The task picks the metrics and the loss (unless config.loss.name says):
  # classification | binary | regression (see jaxlearn.tasks.TASKS).
  config.task = "classification"
  config.top_k = 5  # classification also reports top-k accuracy when k < classes
  config.loss = ml_collections.ConfigDict()
  config.loss.name = ""  # empty: the task's default; else see jaxlearn.losses.LOSSES
  config.loss.label_smoothing = 0.0  # cross_entropy, binary_cross_entropy
  config.loss.gamma = 2.0  # focal, binary_focal
  config.loss.alpha = ml_collections.config_dict.placeholder(float)  # focal class weight
  config.loss.delta = 1.0  # huber
  config.loss.smooth = 1.0  # dice: added to both sides of the Dice ratio
  config.loss.temperature = 1.0  # distillation_kl (targets are the teacher's logits)

  # Per layer kind: default (the layer's own) | zeros | normal | xavier_uniform |
  # xavier_normal | kaiming_uniform | kaiming_normal | lecun_uniform | lecun_normal.
  config.init = ml_collections.ConfigDict()
  config.init.linear = "default"
  config.init.conv = "default"
  config.init.embed = "default"
  config.init.normal_stddev = 0.01  # the `normal` scheme's sigma
  # A workdir (or its checkpoints/best) to copy matching parameters from
  # (transfer learning); parameters whose name or shape differ keep their init.
  config.init.from_checkpoint = ""
  # Which of its parameters to copy (patterns as config.freeze; empty: all that match in shape),
  # e.g. "conv.*" for a fresh head of the same size.
  config.init.from_checkpoint_include = ""
  # Fine-tuning: comma-separated regular expressions over parameter paths ("conv1/kernel")
  # whose parameters get no update (jaxlearn.finetune), e.g. "conv.*".
  config.freeze = ""

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  # Unset fields (None) take the PyTorch default of the optimizer's namesake
  # (see jaxlearn.optim.DEFAULTS): momentum 0 for sgd and rmsprop, betas
  # (0.9, 0.999) for adam/adamw and (0.9, 0.99) for lion, eps 1e-8 (adagrad
  # 1e-10), rmsprop's alpha 0.99, weight decay 0.01 for adamw and 0 otherwise.
  config.optimizer.momentum = ml_collections.config_dict.placeholder(float)  # sgd, rmsprop
  config.optimizer.nesterov = False
  config.optimizer.b1 = ml_collections.config_dict.placeholder(float)
  config.optimizer.b2 = ml_collections.config_dict.placeholder(float)
  config.optimizer.eps = ml_collections.config_dict.placeholder(float)
  config.optimizer.alpha = ml_collections.config_dict.placeholder(float)  # rmsprop's decay
  # adamw, lion: decoupled weight decay; the others: PyTorch's `weight_decay`
  # (an L2 penalty's gradient). Biases and normalisation scales are never decayed.
  config.optimizer.weight_decay = ml_collections.config_dict.placeholder(float)
  config.optimizer.clip_norm = 0.0  # clip gradients to this global norm; 0: off
  config.optimizer.clip_value = 0.0  # clip each gradient entry to +-this; 0: off
  # Average gradients over k batches before each update (a k-times larger batch).
  config.optimizer.accumulate_steps = 1
  # Per-parameter learning-rate multipliers, "PATTERN=NUMBER,...", first match wins, e.g.
  # "head/.*=1,.*=0.1" (discriminative learning rates; jaxlearn.finetune).
  config.optimizer.lr_multipliers = ""

  # PyTorch's lr_scheduler names and units (see jaxlearn.optim.SCHEDULES).
  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "constant"
  config.schedule.warmup_epochs = 0.0  # linear warm-up from 0, before any schedule
  config.schedule.step_size = 10  # step: epochs per decay
  config.schedule.milestones = (30, 80)  # multistep: epochs
  config.schedule.gamma = 0.1  # step, multistep, exponential
  config.schedule.t_max = 0  # cosine: epochs of the half period; 0: the whole run
  config.schedule.min_lr = 0.0  # cosine's eta_min, plateau's min_lr
  config.schedule.pct_start = 0.3  # one_cycle
  config.schedule.div_factor = 25.0  # one_cycle
  config.schedule.final_div_factor = 1e4  # one_cycle
  config.schedule.base_lr = 1e-4  # cyclic: the lower bound (the optimizer's rate is max_lr)
  config.schedule.step_size_up = 2000  # cyclic: optimizer steps
  config.schedule.step_size_down = 0  # cyclic: 0 means step_size_up
  # lambda: a Python callable epoch -> factor, set in a config file;
  # lr = base * f(epoch) (LambdaLR), or the product of f(1..epoch) if multiplicative.
  config.schedule.lr_lambda = None
  config.schedule.multiplicative = False
  config.schedule.factor = 0.1  # plateau: on config.monitor, with config.monitor_mode
  config.schedule.patience = 10  # plateau
  config.schedule.threshold = 1e-4  # plateau
  config.schedule.threshold_mode = "rel"  # plateau: rel | abs
  config.schedule.cooldown = 0  # plateau

  # Mixed precision: "bf16" computes in bfloat16 with float32 parameters,
  # optimizer state and loss; "fp32" computes in float32.
  config.precision = "fp32"
  # Quantization-aware training (jaxlearn.qat): "int8_qat" trains with int8 weights and
  # inputs in every dense and convolution layer, as `jaxlearn.quantize --mode=int8_weights`
  # later runs them; "none" trains in float.
  config.quantization = "none"
  # How the train state lies on the devices: "replicated" (a copy on each), or "fsdp" (each
  # parameter and optimizer-state array split over them, for models too big for one device).
  config.sharding = "replicated"
  # Exponential moving average of the weights, used for evaluation; 0: off.
  config.ema_decay = 0.0
  # Magnitude pruning (jaxlearn.prune): the final share of zero weights (0: off), the epochs
  # over which it rises to it, ranked over all prunable weights or per array, and which
  # parameters are prunable (patterns over paths; by default the kernels).
  config.prune = ml_collections.ConfigDict()
  config.prune.sparsity = 0.0
  config.prune.epochs = 1
  config.prune.scope = "global"
  config.prune.params = ".*kernel"
  # Knowledge distillation from a finished run (jaxlearn.distill): its workdir, the softmax
  # temperature T, and the weight of the teacher's term (1 - alpha goes to the labels).
  config.distill = ml_collections.ConfigDict()
  config.distill.teacher = ""
  config.distill.temperature = 4.0
  config.distill.alpha = 0.9

  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_epochs = 10

  # The validation metric that picks the best checkpoint and drives early
  # stopping and the plateau schedule.
  config.monitor = "accuracy"
  config.monitor_mode = "max"  # max | min
  # Stop when config.monitor has not improved by more than min_delta for
  # `patience` epochs; the best checkpoint is what gets tested. 0: off.
  config.early_stopping = ml_collections.ConfigDict()
  config.early_stopping.patience = 0
  config.early_stopping.min_delta = 0.0

  # Divergence without a NaN: an epoch whose training loss is above `loss_factor`
  # times its best so far, or (classifiers) whose validation accuracy fell to
  # that of always predicting the most common class. After `patience` such
  # epochs in a row the run stops and the command exits 2. 0: off.
  config.divergence = ml_collections.ConfigDict()
  config.divergence.patience = 2
  config.divergence.loss_factor = 3.0

  # A non-finite loss or gradient: "stop" the run (the last good checkpoint
  # is kept), or "skip" the step and go on, stopping only after
  # `max_consecutive_nonfinite` skipped steps in a row.
  config.on_nonfinite = "stop"
  config.max_consecutive_nonfinite = 10

  config.log_every_steps = 100
  # Train steps per compiled call (one dispatch from Python); see step.train_steps.
  config.steps_per_call = 16
  config.progress_bar = True

  # Steps compiled for a CPU use jaxlearn.xla_cpu's convolution/pooling
  # gradients and XLA options (models themselves stay plain Flax).
  config.cpu_kernels = True
  # JAX's persistent compilation cache: a rerun skips compiling what an earlier
  # run compiled. Empty: off (or whatever JAX's own config says).
  config.compilation_cache_dir = "~/.cache/jaxlearn/xla"
  return config


# (config path, lowest allowed value, what to do instead) for every numeric field with a floor.
_AT_LEAST = [
    ("batch_size", 1, "use a batch of 1 or more examples"),
    ("eval_batch_size", 1, "use a batch of 1 or more examples"),
    ("num_epochs", 1, "train for at least 1 epoch"),
    ("steps_per_call", 1, "use 1 or more"),
    ("data.workers", 0, "use 0 (read in the training process) or more worker processes"),
    ("log_every_steps", 1, "use 1 or more"),
    ("max_consecutive_nonfinite", 0, "use 0 or more"),
    ("top_k", 0, "use 0 (off) or more"),
    ("optimizer.accumulate_steps", 1, "use 1 (no accumulation) or more"),
    ("optimizer.clip_norm", 0, "use 0 (off) or a positive norm"),
    ("optimizer.clip_value", 0, "use 0 (off) or a positive bound"),
    ("early_stopping.patience", 0, "use 0 (off) or a number of epochs"),
    ("divergence.patience", 0, "use 0 (off) or a number of epochs"),
    ("divergence.loss_factor", 1, "use a factor above 1, e.g. 3"),
    ("early_stopping.min_delta", 0, "use 0 or a positive margin"),
    ("data.max_train_examples", 0, "use 0 (all) or a number of examples"),
    ("schedule.warmup_epochs", 0, "use 0 (off) or a number of epochs"),
]


def _get(config, path: str):
  for key in path.split("."):
    config = config[key]
  return config


def validate(config, num_devices: int = 1) -> None:
  """Raises ConfigError, naming the field and a fix, for a value that cannot work."""
  for path, floor, fix in _AT_LEAST:
    value = _get(config, path)
    if value < floor:
      raise ConfigError(f"config.{path}={value} is below {floor}; {fix}.")
  if not config.optimizer.learning_rate > 0:
    raise ConfigError(f"config.optimizer.learning_rate={config.optimizer.learning_rate}; the "
                      "learning rate must be positive (e.g. 1e-3 for adam, 0.1 for sgd).")
  if config.optimizer.nesterov and not (config.optimizer.momentum or 0) > 0:
    raise ConfigError("config.optimizer.nesterov=True needs momentum (as in PyTorch); set "
                      "config.optimizer.momentum, e.g. 0.9.")
  for name in ("batch_size", "eval_batch_size"):
    if config[name] % num_devices:
      multiple = max(num_devices, config[name] // num_devices * num_devices)
      raise ConfigError(
          f"config.{name}={config[name]} is not divisible by the {num_devices} devices the "
          f"batch is split over; set --config.{name} to a multiple of {num_devices} "
          f"(e.g. {multiple}).")
  choices = {"monitor_mode": ("min", "max"), "precision": PRECISIONS,
             "on_nonfinite": ("stop", "skip"), "quantization": QUANTIZATIONS,
             "sharding": SHARDINGS, "data.pipeline": ("memory", "grain")}
  for name, allowed in choices.items():
    if _get(config, name) not in allowed:
      raise ConfigError(f"config.{name}={_get(config, name)!r}; use one of {list(allowed)}.")
  if not 0 <= config.prune.sparsity < 1 or config.prune.epochs < 0 or \
      config.prune.scope not in ("global", "layer"):
    raise ConfigError(f"config.prune: sparsity={config.prune.sparsity} must be in [0, 1), "
                      f"epochs={config.prune.epochs} at least 0, scope={config.prune.scope!r} "
                      "'global' or 'layer'.")
  if not config.distill.temperature > 0 or not 0 <= config.distill.alpha <= 1:
    raise ConfigError(f"config.distill.temperature={config.distill.temperature} must be "
                      f"positive and config.distill.alpha={config.distill.alpha} in [0, 1].")
  if not 0 <= config.ema_decay < 1:
    raise ConfigError(f"config.ema_decay={config.ema_decay}; use 0 (off) or a decay in (0, 1) "
                      "such as 0.999.")
