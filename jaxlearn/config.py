"""The base config every experiment in `configs/` starts from, and its checks.

Every key jaxlearn reads is declared here with its default and its rule (the
values it allows), so a misspelled `--config.x.y=v` override fails loudly
(configs are locked) instead of being silently ignored, and `validate`
rejects a value out of its range before a run writes anything, always with
one message: `config.<field>=<value> is not allowed: it must be <range>; <fix>.`
A field cannot be added without its rule (`field(path, default, rule)`), and
a test walks the tree for any that was.
"""

import functools
from typing import Any, Callable, NamedTuple

import ml_collections

from jaxlearn.errors import ConfigError

PRECISIONS = ("fp32", "bf16")  # config.precision; see jaxlearn.runs.build.COMPUTE_DTYPES
QUANTIZATIONS = ("none", "int8_qat")  # config.quantization; see jaxlearn.models.qat
SHARDINGS = ("replicated", "fsdp")  # config.sharding; see jaxlearn.core.parallel

# The default of a float field left unset (None) unless a config sets it, e.g. optimizer.momentum
# (unset: the PyTorch default of the optimizer's namesake, see core.optim.DEFAULTS).
OPTIONAL = ml_collections.config_dict.placeholder(float)


def default_config() -> ml_collections.ConfigDict:
  """Returns the base config; experiments change a few fields of it."""
  return _declare()[0]


def _declare() -> tuple[ml_collections.ConfigDict, dict]:
  """The base config and each field's rule: every field is declared with its allowed values."""
  config, rules = ml_collections.ConfigDict(), {}
  field = functools.partial(_add_field, config, rules)
  field("seed", 0, at_least(0, "use a seed of 0 or more"))

  field("data.name", "mnist",
        registered(_datasets, "or use csv / image_folder / array_record with config.data.path"))
  # ROOT holding ROOT/<name>/ raw files; empty: env JAXLEARN_DATA_DIR, else the download
  # cache ~/.cache/jaxlearn/data. Missing files are downloaded into ROOT/<name>/ (auto);
  # local: never download; tfds: read TensorFlow Datasets instead.
  field("data.dir", "",
        free("a folder holding <name>/ (empty: $JAXLEARN_DATA_DIR, else the download cache)"))
  field("data.source", "auto", registered(_data_sources))  # auto | local | tfds
  # Where downloads come from instead of the datasets' own sites: MIRROR/<name>/<file>.
  # Empty: env JAXLEARN_DATA_MIRROR, else the canonical URLs.
  field("data.mirror", "",
        free("a URL or folder with <name>/<file> (empty: the datasets' own sites)"))
  # TFDS cache dir; empty: TFDS's default
  field("data.tfds_data_dir", "", free("TFDS's data folder (empty: TFDS's default)"))
  # held out from the training split
  field("data.val_fraction", 0.1, between(0, 1, "hold out a share such as 0.1", high_open=True))
  # "a:b:c" pools every labelled example and splits it train:val:test
  # (e.g. "7:2:1"); empty keeps the dataset's own test split.
  field("data.split_ratios", "", split_ratios())
  # 0: all; a prefix, for quick trials
  field("data.max_train_examples", 0, at_least(0, "use 0 (all) or a number of examples"))
  # -1: off; else a class id whose examples become the positives (1) of a binary task, all
  # others negatives (0): one-vs-rest, e.g. Fashion-MNIST's shirts (class 6) at 1 in 10.
  field("data.positive_class", -1, at_least(-1, "use -1 (off) or a class id such as 6"))
  # Images: per-channel mean/std on [0, 1] pixels; empty: fitted on the train split.
  field("data.mean", (), numbers("one value per channel, e.g. (0.1307,), or () to fit it"))
  field("data.std", (),
        numbers("one positive value per channel, e.g. (0.3081,), or () to fit it", positive=True))
  # Text: a word vocabulary built on the train split; sequences padded/truncated.
  field("data.max_length", 64, at_least(1, "use 1 or more tokens"))
  # counting padding and unknown-word ids
  field("data.vocab_size", 20000,
        at_least(3, "count padding, the unknown word and at least one word"))
  # words seen fewer times in train are unknown
  field("data.min_count", 1, at_least(1, "use 1 (every word seen in training) or more"))
  # The dataset's file or folder: a table (name "csv"), a folder of class subfolders
  # ("image_folder"), or one written by `python -m jaxlearn.data.records` ("array_record").
  field("data.path", "", free("the dataset's file or folder (csv, image_folder, array_record)"))
  # image_folder: every image decoded to (height, width) (empty: the first image's size, which
  # all must share) with 1 (grey) or 3 (RGB) channels (0: as the first image).
  field("data.image_size", (), image_size())
  field("data.channels", 0, one_of(0, 1, 3, fix="use 0 (as the first image), 1 (grey) or 3 (RGB)"))
  # How training batches are made: "memory" reads the training split into the devices'
  # memory once (small datasets); "grain" streams it from the source with Grain, decoded in
  # `data.workers` worker processes, each process reading only its shard
  # (jaxlearn.data.streaming). Validation and test splits are read into memory either way.
  field("data.pipeline", "memory", one_of("memory", "grain"))
  field("data.workers", 2,
        at_least(0, "use 0 (read in the training process) or more worker processes"))
  # Tables: the column to predict, columns to ignore ("a,b").
  field("data.target_column", "", free("a column of the table (empty: the last)"))
  field("data.drop_columns", "", free("comma-separated columns of the table"))
  # Generated data (synthetic_linear, two_moons).
  field("data.num_examples", 1000,
        at_least(10, "generate at least 10 examples (they are split three ways)"))
  # synthetic_linear: y = x . w + b + noise
  field("data.true_weights", (2.0, -3.4), numbers("the generating weights, e.g. (2.0, -3.4)"))
  field("data.true_bias", 4.2, number())
  field("data.noise_std", 0.01, at_least(0, "use 0 (no noise) or a positive standard deviation"))

  # Image augmentation inside the compiled step, on the accelerator: ops
  # applied in order, comma-separated (see jaxlearn.data.augment), e.g.
  # "random_crop,horizontal_flip". Empty: none.
  field("augment.ops", "",
        names_in(_augmentations, "comma-separated, e.g. 'random_crop,horizontal_flip'"))
  field("augment.crop_padding", 4, at_least(0, "use 0 or more pixels"))
  field("augment.max_rotation_degrees", 15.0, between(0, 180, "use degrees such as 15"))
  field("augment.max_translation", 2.0, at_least(0, "use 0 or more pixels"))  # pixels
  # on normalised pixels
  field("augment.noise_std", 0.1, at_least(0, "use a standard deviation such as 0.1"))
  field("augment.erase_prob", 0.5, between(0, 1, "use a probability such as 0.5"))
  # fraction of the image
  field("augment.erase_max_area", 0.2,
        between(0, 1, "use a share of the image such as 0.2", low_open=True))

  field("model.name", "lenet5", registered(_models))
  # Other model fields are the model's own arguments (set by each experiment);
  # sizes the data determines (in_features, in_channels, vocab_size, num_classes)
  # are filled in from it unless set here.

  # The task picks the metrics and the loss (unless config.loss.name says):
  # classification | binary | regression (see jaxlearn.core.tasks.TASKS).
  field("task", "classification", registered(_tasks))
  # classification also reports top-k accuracy when k < classes
  field("top_k", 5, at_least(0, "use 0 (off) or more"))
  # empty: the task's default; else see jaxlearn.core.losses.LOSSES
  field("loss.name", "", registered(_losses, "or empty for the task's own loss", also=("",)))
  # cross_entropy, binary_cross_entropy
  field("loss.label_smoothing", 0.0,
        between(0, 1, "use 0 (off) or a small share such as 0.1", high_open=True))
  # binary_cross_entropy: the positive class's weight (torch's pos_weight; 1: unweighted)
  field("loss.pos_weight", 1.0, above(0, "use a positive weight such as 1.0, or negatives / "
                                         "positives for rare positives"))
  # focal, binary_focal
  field("loss.gamma", 2.0, at_least(0, "use 0 (cross-entropy) or a focusing power such as 2"))
  # focal class weight
  field("loss.alpha", OPTIONAL, between(0, 1, "use a class weight such as 0.25, or leave it unset"))
  field("loss.delta", 1.0, above(0, "use a positive threshold such as 1.0"))  # huber
  # dice: added to both sides of the Dice ratio
  field("loss.smooth", 1.0, at_least(0, "use 0 or a positive smoothing term such as 1.0"))
  # distillation_kl (targets are the teacher's logits)
  field("loss.temperature", 1.0, above(0, "use a positive temperature such as 1.0"))

  # Per layer kind: default (the layer's own) | zeros | normal | xavier_uniform |
  # xavier_normal | kaiming_uniform | kaiming_normal | lecun_uniform | lecun_normal.
  field("init.linear", "default", registered(_init_schemes))
  field("init.conv", "default", registered(_init_schemes))
  field("init.embed", "default", registered(_init_schemes))
  # the `normal` scheme's sigma
  field("init.normal_stddev", 0.01, above(0, "use a positive standard deviation such as 0.01"))
  # A workdir (or its checkpoints/best) to copy matching parameters from
  # (transfer learning); parameters whose name or shape differ keep their init.
  field("init.from_checkpoint", "", free("a finished run's workdir, or its checkpoints/best"))
  # Which of its parameters to copy (patterns as config.freeze; empty: all that match in shape),
  # e.g. "conv.*" for a fresh head of the same size.
  field("init.from_checkpoint_include", "", patterns())
  # Fine-tuning: comma-separated regular expressions over parameter paths ("conv1/kernel")
  # whose parameters get no update (jaxlearn.core.finetune), e.g. "conv.*".
  field("freeze", "", patterns())

  field("optimizer.name", "adam", registered(_optimizers))
  field("optimizer.learning_rate", 1e-3,
        above(0, "the learning rate must be positive (e.g. 1e-3 for adam, 0.1 for sgd)"))
  # Unset fields (None) take the PyTorch default of the optimizer's namesake
  # (see jaxlearn.core.optim.DEFAULTS): momentum 0 for sgd and rmsprop, betas
  # (0.9, 0.999) for adam/adamw and (0.9, 0.99) for lion, eps 1e-8 (adagrad
  # 1e-10), rmsprop's alpha 0.99, weight decay 0.01 for adamw and 0 otherwise.
  # sgd, rmsprop
  field("optimizer.momentum", OPTIONAL,
        between(0, 1, "use 0 (none) or a momentum such as 0.9", high_open=True))
  field("optimizer.nesterov", False, flag())
  field("optimizer.b1", OPTIONAL, between(0, 1, "use a decay such as 0.9", high_open=True))
  field("optimizer.b2", OPTIONAL, between(0, 1, "use a decay such as 0.999", high_open=True))
  field("optimizer.eps", OPTIONAL, at_least(0, "use a small positive number such as 1e-8"))
  field("optimizer.alpha", OPTIONAL, between(0, 1, "use a decay such as 0.99"))  # rmsprop's decay
  # adamw, lion: decoupled weight decay; the others: PyTorch's `weight_decay`
  # (an L2 penalty's gradient). Biases and normalisation scales are never decayed.
  field("optimizer.weight_decay", OPTIONAL,
        at_least(0, "use 0 (off) or a positive decay such as 0.01"))
  # clip gradients to this global norm; 0: off
  field("optimizer.clip_norm", 0.0, at_least(0, "use 0 (off) or a positive norm"))
  # clip each gradient entry to +-this; 0: off
  field("optimizer.clip_value", 0.0, at_least(0, "use 0 (off) or a positive bound"))
  # Average gradients over k batches before each update (a k-times larger batch).
  field("optimizer.accumulate_steps", 1, at_least(1, "use 1 (no accumulation) or more"))
  # Per-parameter learning-rate multipliers, "PATTERN=NUMBER,...", first match wins, e.g.
  # "head/.*=1,.*=0.1" (discriminative learning rates; jaxlearn.core.finetune).
  field("optimizer.lr_multipliers", "", lr_multipliers())

  # PyTorch's lr_scheduler names and units (see jaxlearn.core.optim.SCHEDULES).
  field("schedule.name", "constant", registered(_schedules))
  # linear warm-up from 0, before any schedule
  field("schedule.warmup_epochs", 0.0, at_least(0, "use 0 (off) or a number of epochs"))
  field("schedule.step_size", 10, at_least(1, "use 1 or more epochs"))  # step: epochs per decay
  field("schedule.milestones", (30, 80), milestones())  # multistep: epochs
  # step, multistep, exponential
  field("schedule.gamma", 0.1, above(0, "use a decay factor such as 0.1"))
  # cosine: epochs of the half period; 0: the whole run
  field("schedule.t_max", 0, at_least(0, "use 0 (the whole run) or a number of epochs"))
  # cosine's eta_min, plateau's min_lr
  field("schedule.min_lr", 0.0, at_least(0, "use 0 or a positive rate"))
  # one_cycle
  field("schedule.pct_start", 0.3,
        between(0, 1, "use a share of the run such as 0.3", low_open=True, high_open=True))
  field("schedule.div_factor", 25.0, above(0, "use a factor such as 25"))  # one_cycle
  field("schedule.final_div_factor", 1e4, above(0, "use a factor such as 1e4"))  # one_cycle
  # cyclic: the lower bound (the optimizer's rate is max_lr)
  field("schedule.base_lr", 1e-4, above(0, "use a positive lower rate such as 1e-4"))
  # cyclic: optimizer steps
  field("schedule.step_size_up", 2000, at_least(1, "use 1 or more optimizer steps"))
  # cyclic: 0 means step_size_up
  field("schedule.step_size_down", 0, at_least(0, "use 0 (as step_size_up) or more steps"))
  # lambda: a Python callable epoch -> factor, set in a config file;
  # lr = base * f(epoch) (LambdaLR), or the product of f(1..epoch) if multiplicative.
  field("schedule.lr_lambda", None, function_or_none())
  field("schedule.multiplicative", False, flag())
  # plateau: on config.monitor, with config.monitor_mode
  field("schedule.factor", 0.1,
        between(0, 1, "use a factor such as 0.1", low_open=True, high_open=True))
  field("schedule.patience", 10, at_least(0, "use 0 or a number of epochs"))  # plateau
  field("schedule.threshold", 1e-4, at_least(0, "use 0 or a small margin such as 1e-4"))  # plateau
  field("schedule.threshold_mode", "rel", one_of("rel", "abs"))  # plateau: rel | abs
  field("schedule.cooldown", 0, at_least(0, "use 0 or a number of epochs"))  # plateau

  # Mixed precision: "bf16" computes in bfloat16 with float32 parameters,
  # optimizer state and loss; "fp32" computes in float32.
  field("precision", "fp32", one_of(*PRECISIONS))
  # Quantization-aware training (jaxlearn.models.qat): "int8_qat" trains with int8 weights and
  # inputs in every dense and convolution layer, as `jaxlearn.quantize --mode=int8_weights`
  # later runs them; "none" trains in float.
  field("quantization", "none", one_of(*QUANTIZATIONS))
  # How the train state lies on the devices: "replicated" (a copy on each), or "fsdp" (each
  # parameter and optimizer-state array split over them, for models too big for one device).
  field("sharding", "replicated", one_of(*SHARDINGS))
  # Exponential moving average of the weights, used for evaluation; 0: off.
  field("ema_decay", 0.0, between(0, 1, "use 0 (off) or a decay such as 0.999", high_open=True))
  # Magnitude pruning (jaxlearn.core.prune): the final share of zero weights (0: off), the epochs
  # over which it rises to it, ranked over all prunable weights or per array, and which
  # parameters are prunable (patterns over paths; by default the kernels).
  field("prune.sparsity", 0.0,
        between(0, 1, "use 0 (off) or a share of zero weights such as 0.9", high_open=True))
  field("prune.epochs", 1, at_least(0, "use 0 or a number of epochs"))
  field("prune.scope", "global", one_of("global", "layer"))
  field("prune.params", ".*kernel", patterns())
  # Knowledge distillation from a finished run (jaxlearn.training.distill): its workdir, the softmax
  # temperature T, and the weight of the teacher's term (1 - alpha goes to the labels).
  field("distill.teacher", "", free("a finished run's workdir (empty: no distillation)"))
  field("distill.temperature", 4.0, above(0, "use a positive temperature such as 4"))
  field("distill.alpha", 0.9, between(0, 1, "use a weight such as 0.9"))

  field("batch_size", 128, at_least(1, "use a batch of 1 or more examples"))
  field("eval_batch_size", 1000, at_least(1, "use a batch of 1 or more examples"))
  field("num_epochs", 10, at_least(1, "train for at least 1 epoch"))

  # The validation metric that picks the best checkpoint and drives early
  # stopping and the plateau schedule.
  field("monitor", "accuracy",
        free("a validation metric of the task (checked against it when the run is built)"))
  field("monitor_mode", "max", one_of("min", "max"))  # max | min
  # Stop when config.monitor has not improved by more than min_delta for
  # `patience` epochs; the best checkpoint is what gets tested. 0: off.
  field("early_stopping.patience", 0, at_least(0, "use 0 (off) or a number of epochs"))
  field("early_stopping.min_delta", 0.0, at_least(0, "use 0 or a positive margin"))

  # Divergence without a NaN: an epoch whose training loss is above `loss_factor`
  # times its best so far, or (classifiers) whose validation accuracy fell to
  # that of always predicting the most common class. After `patience` such
  # epochs in a row the run stops and the command exits 2. 0: off.
  field("divergence.patience", 2, at_least(0, "use 0 (off) or a number of epochs"))
  field("divergence.loss_factor", 3.0, at_least(1, "use a factor above 1, e.g. 3"))

  # A non-finite loss or gradient: "stop" the run (the last good checkpoint
  # is kept), or "skip" the step and go on, stopping only after
  # `max_consecutive_nonfinite` skipped steps in a row.
  field("on_nonfinite", "stop", one_of("stop", "skip"))
  field("max_consecutive_nonfinite", 10, at_least(0, "use 0 or more"))

  field("log_every_steps", 100, at_least(1, "use 1 or more"))
  # Weights & Biases (pip install 'jaxlearn[wandb]'): the config, every metric written, the
  # test result and the evaluation's figures go to this project (empty: off). Runs of one
  # sweep share a group (empty: the sweep's folder name, or none). WANDB_MODE=offline keeps
  # them in WORKDIR/wandb/ for `wandb sync`.
  field("logging.wandb_project", "", free("a W&B project name (empty: no W&B)"))
  field("logging.wandb_group", "", free("a W&B group name (empty: none, or the sweep's)"))
  # After each epoch, per-layer gradient norms, update/weight ratios and dead units on one
  # fixed train batch, in WORKDIR/layer_stats.jsonl (see jaxlearn.training.layer_stats):
  # what `jaxlearn.diagnose` reads for vanishing/exploding gradients and dead ReLUs.
  field("logging.layer_stats", True, flag())
  # Train steps per compiled call (one dispatch from Python); see core.step.train_steps.
  field("steps_per_call", 16, at_least(1, "use 1 or more"))
  field("progress_bar", True, flag())

  # Steps compiled for a CPU use jaxlearn.xla_cpu's convolution/pooling
  # gradients and XLA options (models themselves stay plain Flax).
  field("cpu_kernels", True, flag())
  # JAX's persistent compilation cache: a rerun skips compiling what an earlier
  # run compiled. Empty: off (or whatever JAX's own config says).
  field("compilation_cache_dir", "~/.cache/jaxlearn/xla",
        free("a folder for compiled programs (empty: off)"))
  return config, rules


# ---------------------------------------------------------------- the rules


class Rule(NamedTuple):
  """What a field may hold: `allows(value, config)`, the allowed values in words, a fix."""
  allows: Callable[[Any, Any], bool]
  allowed: Callable[[Any], str]  # config -> e.g. "at least 1", "one of ['min', 'max']"
  fix: str = ""
  free: bool = False  # any value of the field's type (paths, names checked elsewhere)
  optional: bool = False  # None (unset) is allowed too


def _number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def at_least(low, fix: str) -> Rule:
  return Rule(lambda v, c: _number(v) and v >= low, lambda c: f"at least {low}", fix)


def above(low, fix: str) -> Rule:
  return Rule(lambda v, c: _number(v) and v > low, lambda c: f"above {low}", fix)


def between(low, high, fix: str, *, low_open: bool = False, high_open: bool = False) -> Rule:
  """A number in [low, high], or with an open end, e.g. [0, 1)."""
  def allows(v, c):
    return (_number(v) and (v > low if low_open else v >= low)
            and (v < high if high_open else v <= high))
  interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
  return Rule(allows, lambda c: f"in {interval}", fix)


def number() -> Rule:
  return Rule(lambda v, c: _number(v), lambda c: "a number", "")


def one_of(*choices, fix: str = "") -> Rule:
  return Rule(lambda v, c: v in choices, lambda c: f"one of {list(choices)}",
              fix or "use one of them")


def registered(names: Callable[[Any], Any], fix: str = "", also: tuple = ()) -> Rule:
  """A name in a registry (`names(config)`: imported when checked, as the registries live in
  the packages below)."""
  return Rule(lambda v, c: v in names(c) or v in also,
              lambda c: f"one of {sorted(names(c))}", fix or "use one of them")


def names_in(names: Callable[[Any], Any], fix: str) -> Rule:
  """Comma-separated names, each in `names(config)` (empty: none)."""
  listed = lambda v: [n.strip() for n in v.split(",") if n.strip()]
  return Rule(lambda v, c: all(n in names(c) for n in listed(v)),
              lambda c: f"made of {sorted(names(c))}", fix)


def free(what: str) -> Rule:
  """A string that is not a choice: a path, a column, a metric checked when the run is built."""
  return Rule(lambda v, c: isinstance(v, str), lambda c: what, "", free=True)


def flag() -> Rule:
  return Rule(lambda v, c: isinstance(v, bool), lambda c: "True or False", "")


def function_or_none() -> Rule:
  return Rule(lambda v, c: v is None or callable(v), lambda c: "a function of the epoch",
              "set it in a config file (def get_config(): ... = lambda epoch: 0.95 ** epoch)")


def numbers(what: str, positive: bool = False) -> Rule:
  allows = lambda v, c: isinstance(v, (tuple, list)) and all(
      _number(x) and (x > 0 or not positive) for x in v)
  return Rule(allows, lambda c: what, "pass them as a tuple, e.g. '(0.5,)'")


def image_size() -> Rule:
  allows = lambda v, c: isinstance(v, (tuple, list)) and (
      len(v) == 0 or (len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)))
  return Rule(allows, lambda c: "() or (height, width) in pixels",
              "e.g. --config.data.image_size='(64, 64)'")


def milestones() -> Rule:
  allows = lambda v, c: isinstance(v, (tuple, list)) and all(
      isinstance(x, int) and x >= 0 for x in v) and list(v) == sorted(set(v))
  return Rule(allows, lambda c: "increasing epochs, e.g. (30, 80)",
              "e.g. --config.schedule.milestones='(30, 80)'")


def split_ratios() -> Rule:
  def allows(v, c):
    if v == "":
      return True
    try:
      parts = [float(x) for x in v.split(":")]
    except ValueError:
      return False
    return len(parts) == 3 and min(parts) >= 0 and parts[0] > 0
  return Rule(allows, lambda c: "empty or 'train:val:test', e.g. '7:2:1'",
              "use three non-negative shares with a positive train share")


def _parses(parse) -> Callable[[Any, Any], bool]:
  def allows(v, c):
    try:
      parse(v)
    except ConfigError:
      return False
    return True
  return allows


def patterns() -> Rule:
  """Comma-separated regular expressions over parameter paths ('conv.*', see core.paths)."""
  def parse(v):
    from jaxlearn.core import paths  # pylint: disable=import-outside-toplevel
    paths.parse_patterns(v)
  return Rule(_parses(parse), lambda c: "comma-separated regular expressions, e.g. 'conv.*'",
              "fix the expression")


def lr_multipliers() -> Rule:
  def parse(v):
    from jaxlearn.core import finetune  # pylint: disable=import-outside-toplevel
    finetune.parse_multipliers(v)
  return Rule(_parses(parse), lambda c: "PATTERN=NUMBER,... with numbers >= 0",
              "e.g. 'head/.*=1,.*=0.1'")


# The registries the named fields choose from; imported only when a config is checked.
def _datasets(config):
  from jaxlearn.data.datasets import DATASETS  # pylint: disable=import-outside-toplevel
  return DATASETS


def _data_sources(config):
  from jaxlearn.data.sources import SOURCES  # pylint: disable=import-outside-toplevel
  return SOURCES


def _augmentations(config):
  from jaxlearn.data import augment  # pylint: disable=import-outside-toplevel
  return augment.ops_for(config.augment)


def _models(config):
  from jaxlearn.models import MODELS  # pylint: disable=import-outside-toplevel
  return MODELS


def _tasks(config):
  from jaxlearn.core.tasks import TASKS  # pylint: disable=import-outside-toplevel
  return TASKS


def _losses(config):
  from jaxlearn.core.losses import LOSSES  # pylint: disable=import-outside-toplevel
  return LOSSES


def _init_schemes(config):
  from jaxlearn.models.initializers import SCHEMES  # pylint: disable=import-outside-toplevel
  return SCHEMES


def _optimizers(config):
  from jaxlearn.core.optim import OPTIMIZERS  # pylint: disable=import-outside-toplevel
  return OPTIMIZERS


def _schedules(config):
  from jaxlearn.core.optim import SCHEDULES  # pylint: disable=import-outside-toplevel
  return SCHEDULES


def _add_field(config, rules: dict, path: str, default, rule: Rule) -> None:
  """Sets config.<path> to `default` and records the field's rule."""
  *sections, name = path.split(".")
  node = config
  for section in sections:
    if section not in node:
      node[section] = ml_collections.ConfigDict()
    node = node[section]
  optional = isinstance(default, ml_collections.FieldReference)
  node[name] = ml_collections.config_dict.placeholder(float) if optional else default
  rules[path] = rule._replace(optional=True) if optional else rule


def rules() -> dict[str, Rule]:
  """Every field of `default_config()` with its declared rule, by dotted path."""
  return _declare()[1]


def field_error(path: str, value, rule: Rule, config) -> ConfigError:
  """The one message of a field whose value is not allowed: field, value, range and fix."""
  fix = f"; {rule.fix}" if rule.fix else ""
  return ConfigError(f"config.{path}={value!r} is not allowed: it must be "
                     f"{rule.allowed(config)}{fix}.")


def _get(config, path: str):
  for key in path.split("."):
    config = config[key]
  return config


def validate(config, num_devices: int = 1) -> None:
  """Raises ConfigError, naming the field and a fix, for a value that cannot work.

  Every field is checked by the rule declared with its default; then the
  checks that involve several fields.
  """
  for path, rule in rules().items():
    value = _get(config, path)
    if value is None and rule.optional:
      continue
    if not rule.allows(value, config):
      raise field_error(path, value, rule, config)
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
