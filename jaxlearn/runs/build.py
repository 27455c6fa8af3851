"""From a config and the data to a run's parts: the task sized to the data and the train state."""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlearn import data, xla_cpu
from jaxlearn.core import finetune, optim, paths, state as state_lib, tasks
from jaxlearn.errors import ConfigError
from jaxlearn.models import create_model, initializers as init, qat, summary
from jaxlearn.runs import checkpoint

# config.precision -> the dtype the forward pass computes in (None: the parameters').
COMPUTE_DTYPES = {"fp32": None, "bf16": jnp.bfloat16}


def prepare_task(config, splits: data.Splits) -> tuple[tasks.Task, data.Splits]:
  """The configured task, sized to the data, and the splits with targets it can use."""
  tasks.check_task_name(config.task)
  task = tasks.TASKS[config.task]
  for split in splits[:3]:
    tasks.check_targets(task, split["targets"])
  task = tasks.make_task(config, num_outputs(task, splits))
  if config.monitor not in tasks.metric_names(task):
    raise ConfigError(f"config.monitor={config.monitor!r} is not a metric of the "
                      f"{task.name!r} task; choose one of {tasks.metric_names(task)} (with "
                      "config.monitor_mode 'min' for losses and errors).")
  cast = lambda split: {**split, "targets": split["targets"].astype(task.target_dtype)}
  return task, splits._replace(train=cast(splits.train), val=cast(splits.val),
                               test=cast(splits.test))


def num_outputs(task: tasks.Task, splits: data.Splits) -> int:
  """The model's output size: classes (over every split) or the target width."""
  return max(task.num_outputs(s["targets"]) for s in splits[:3])


def data_dims(splits: data.Splits, task: tasks.Task) -> dict:
  """Model arguments the data decides: input sizes, vocabulary, and the output size."""
  outputs = num_outputs(task, splits)
  return {**data.input_dims(splits), "num_classes": outputs, "out_features": outputs}


def checked_state(config, splits: data.Splits, task: tasks.Task,
                  steps_per_epoch: int) -> state_lib.TrainState:
  """`create_state` sized to the data, with a model that cannot take it named before use."""
  state = create_state(config, steps_per_epoch, data_dims(splits, task))
  check_model_fits(state, splits, task, config.model.name)
  return state


def check_model_fits(state, splits: data.Splits, task: tasks.Task, model_name: str) -> None:
  """Runs the model abstractly on one example so a shape mismatch is named before training."""
  example = jax.tree.map(lambda a: a[:1], splits.train)
  try:
    outputs = jax.eval_shape(lambda s, x: s.apply_model(s.params, x, train=False)[0],
                             state, example["inputs"])
    jax.eval_shape(task.loss, outputs, example["targets"])
  except Exception as e:  # Any error here means these inputs do not fit this model.
    expected = state.expected_input()
    raise ConfigError(
        f"Model {model_name!r} cannot take this data: inputs shaped "
        f"{example['inputs'].shape[1:]} ({example['inputs'].dtype}) per example and targets "
        f"shaped {example['targets'].shape[1:]}{'; it takes ' + expected if expected else ''} "
        f"({e.__class__.__name__}: "
        f"{str(e).splitlines()[0][:300]}). Pick a model made for this input shape "
        "(config.model.name), or set its size arguments in config.model.") from e


def summarize_state(state, inputs, config, backward: bool = False) -> summary.ModelSummary:
  """The layers of `state`'s model on `inputs` (`jaxlearn.summary`'s table), from shapes
  alone, so a state sharded over devices or processes is summarised as it stands."""
  shapes = lambda tree: jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)
  model = nnx.merge(state.graphdef, shapes(state.params), shapes(state.model_state))
  return summary.summarize(model, shapes(inputs), freeze=paths.parse_patterns(config.freeze),
                           backward=backward, train=False)


def build_model(config, rngs: nnx.Rngs, dims: dict | None = None) -> nnx.Module:
  """`config.model` as training and inference run it (with quantization-aware training's
  fake-quantized products when `config.quantization` asks for them)."""
  model = create_model(config.model, rngs, dims)
  return qat.quantize_for_training(model, config.get("quantization", "none"))


def create_state(config, steps_per_epoch: int, dims: dict | None = None) -> state_lib.TrainState:
  """The model, optimizer and schedule of `config`, initialised from its seed.

  `steps_per_epoch` counts batches; with gradient accumulation the schedule
  counts optimizer updates, `accumulate_steps` batches each. `dims` are the
  sizes the data decides (see `data_dims`). Built by one compiled program: run
  eagerly, every initialiser of every layer shape would compile on its own.
  """
  build = state_builder(config, steps_per_epoch, dims)
  return jax.jit(lambda: build(config.seed), compiler_options=_run_once_options(config))()


def create_states(config, steps_per_epoch: int, dims: dict | None, seeds,
                  learning_rate: float, optimizer_settings: dict | None = None
                  ) -> state_lib.TrainState:
  """Trials of `config` stacked on a leading axis, one per seed, built by one program.

  Their optimizer reads its rate from a schedule of base rate `learning_rate`,
  times each trial's `lr_scale` (see `jaxlearn.core.optim`); a vectorised sweep
  sets those (`jaxlearn.sweeps.vectorised`). `optimizer_settings` replaces some
  of the optimizer's settings (see `make_tx`).
  """
  build = state_builder(config, steps_per_epoch, dims, learning_rate, optimizer_settings)
  return jax.jit(jax.vmap(build), compiler_options=_run_once_options(config))(
      jnp.asarray(seeds, jnp.uint32))


def make_tx(config, steps_per_epoch: int, learning_rate: float | None = None,
            optimizer_settings: dict | None = None):
  """The run's optimizer, its schedule of base rate `learning_rate` (default: the config's);
  `optimizer_settings` replaces some of config.optimizer's (e.g. a traced weight decay)."""
  updates_per_epoch = max(1, steps_per_epoch // config.optimizer.accumulate_steps)
  base_lr = config.optimizer.learning_rate if learning_rate is None else learning_rate
  schedule = optim.make_schedule(config.schedule, base_lr, updates_per_epoch,
                                 updates_per_epoch * config.num_epochs)
  freeze = paths.parse_patterns(config.freeze)
  return optim.make_optimizer(config.optimizer, schedule, tuple(freeze), config.prune,
                              updates_per_epoch, settings=optimizer_settings)


def state_builder(config, steps_per_epoch: int, dims: dict | None = None,
                  learning_rate: float | None = None, optimizer_settings: dict | None = None):
  """`build(seed) -> TrainState` (traceable, so it can be compiled and vmapped over seeds)."""
  tx = make_tx(config, steps_per_epoch, learning_rate, optimizer_settings)
  options = dict(ema_decay=config.ema_decay, compute_dtype=COMPUTE_DTYPES[config.precision])

  def build(seed):
    model_key, step_key = jax.random.split(jax.random.PRNGKey(seed))
    model = build_model(config, nnx.Rngs(params=model_key), dims)
    init.initialise(model, config.init, jax.random.fold_in(model_key, 1))
    params = state_lib.pure(nnx.state(model, nnx.Param))
    frozen_layers = finetune.check_and_log(config, params)
    return state_lib.create_train_state(model, tx, step_key, **options,
                                        frozen_layers=frozen_layers)

  return build


def _run_once_options(config) -> dict:
  platform = jax.devices()[0].platform
  return xla_cpu.compiler_options("run_once", platform) if config.cpu_kernels else {}


def start_from_checkpoint(state, source: str, include: str = "") -> state_lib.TrainState:
  """`state` afresh, with the parameters (and their layers' statistics) that match `source`'s
  best checkpoint copied in; `include` (patterns, see jaxlearn.core.finetune) limits which."""
  params, model_state, _, _ = checkpoint.load_matching_params(
      source, state.params, state.model_state,
      tuple(paths.parse_patterns(include, "config.init.from_checkpoint_include")))
  model = nnx.merge(state.graphdef, params, model_state)
  return state_lib.create_train_state(model, state.tx, state.rng, ema_decay=state.ema_decay,
                                      compute_dtype=state.compute_dtype,
                                      frozen_layers=state.frozen_layers)
