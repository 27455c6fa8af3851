"""The training loop: config -> data -> train state -> compiled steps -> checkpoints -> summary.

`train_and_evaluate(config, workdir)` is the whole run; `jaxlearn.main` only
parses flags and calls it. Rerunning it on the same workdir resumes from the
`latest` checkpoint, and the `best` checkpoint is what the test split sees.
"""

import dataclasses
import functools
import json
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlearn import checkpoint, compiler, data, init, interrupts, optim, parallel, reporting, tasks
from jaxlearn import state as state_lib
from jaxlearn.data import augment as augmentation
from jaxlearn.data import pipeline
from jaxlearn.errors import ConfigError, NonFiniteLossError
from jaxlearn.models import create_model
from jaxlearn.step import eval_step, train_steps
from jaxlearn.tasks import CLASSIFICATION

# config.precision -> the dtype the forward pass computes in (None: the parameters').
PRECISIONS = {"fp32": None, "bf16": jnp.bfloat16}


@dataclasses.dataclass
class Progress:
  """How far the run has got; saved as JSON with every checkpoint."""
  epochs_done: int = 0
  best_value: float | None = None
  best_epoch: int = 0
  train_seconds: float = 0.0
  history: list = dataclasses.field(default_factory=list)
  plateau: dict = dataclasses.field(default_factory=dict)  # see optim.plateau_update
  stop_reason: str = ""  # set once training has ended early


class TrainingInterrupted(Exception):
  """Raised after SIGINT/SIGTERM once the `latest` checkpoint holds the current step."""


def train_and_evaluate(config, workdir: str, raw: data.RawData | None = None) -> dict:
  """Trains, keeps the best checkpoint by validation metric, tests it; returns the summary.

  `raw` replaces the dataset config.data names with your own (see
  `jaxlearn.data.from_arrays` / `from_source`).
  """
  mesh = parallel.make_mesh()
  check_config(config, jax.device_count())
  raw = raw if raw is not None else data.load_raw(config.data, config.seed)
  splits = data.make_splits(raw, config.data, config.seed)
  task, splits = prepare_task(config, splits)
  augment = augmentation.make_augment(config.augment)
  steps_per_epoch = pipeline.num_train_steps(len(splits.train["targets"]), config.batch_size)
  state = create_state(config, steps_per_epoch, data_dims(splits, task))
  check_model_fits(state, splits, task, config.model.name)
  state = jax.device_put(state, parallel.replicated(mesh))
  logging.info("Model %s: %d parameters; %d train / %d val / %d test examples; %d device(s).",
               config.model.name, state_lib.num_params(state), len(splits.train["targets"]),
               len(splits.val["targets"]), len(splits.test["targets"]), jax.device_count())

  os.makedirs(workdir, exist_ok=True)
  checkpoints = checkpoint.Checkpoints(workdir)
  state, saved = checkpoints.restore_latest(state)
  if not saved and config.init.from_checkpoint:  # Only a new run; a resume has its own.
    state = jax.device_put(start_from_checkpoint(state, config.init.from_checkpoint),
                           parallel.replicated(mesh))
  progress = Progress(**saved) if saved else Progress()
  if progress.stop_reason:
    logging.info("%s holds a run that stopped early (%s); testing its best checkpoint.",
                 checkpoints.directory, progress.stop_reason)
  elif saved and progress.epochs_done >= config.num_epochs:
    logging.info("%s already holds all %d epochs; testing its best checkpoint. Raise "
                 "--config.num_epochs to train on.", checkpoints.directory, config.num_epochs)
  elif saved:
    logging.info("Resuming from %s at step %d (epoch %d).", checkpoints.directory,
                 int(state.step), progress.epochs_done + 1)
  _write_json(os.path.join(workdir, "config.json"), config.to_dict())
  _write_json(os.path.join(workdir, "preprocessing.json"), splits.preprocessing)

  train_chunk, eval_batch = compile_steps(mesh, task, config.on_nonfinite == "skip", augment,
                                         config.steps_per_call)
  train_data = pipeline.to_device(splits.train, mesh)
  val_batches = pipeline.make_eval_batches(splits.val, config.eval_batch_size, mesh)
  batcher = pipeline.make_epoch_batcher(config.batch_size, mesh)
  reporter = reporting.Reporter(workdir)
  try:
    with interrupts.catch_stop_signals() as stop:
      for epoch in range(progress.epochs_done,
                         config.num_epochs if not progress.stop_reason else 0):
        started = time.time()
        batches = batcher(train_data, config.seed, epoch)
        first = int(state.step) - epoch * steps_per_epoch
        state, train_metrics = train_epoch(state, train_chunk, batches, first, steps_per_epoch,
                                           config, epoch, reporter, stop)
        if int(state.step) < (epoch + 1) * steps_per_epoch:  # Stopped mid-epoch.
          progress.train_seconds += time.time() - started
          checkpoints.save_latest(state, dataclasses.asdict(progress))
          raise _interrupted(state, checkpoints)
        val_metrics = evaluate(eval_batch, state, val_batches)
        reporter.write(int(state.step), "val", val_metrics)
        improved = record_epoch(progress, epoch, train_metrics, val_metrics, config,
                                time.time() - started)
        if improved:
          checkpoints.save_best(state, dataclasses.asdict(progress))
        if config.schedule.name == "plateau":
          state = lower_lr_on_plateau(state, progress, val_metrics[config.monitor], config)
        progress.stop_reason = early_stopping_reason(progress, config)
        checkpoints.save_latest(state, dataclasses.asdict(progress))
        if stop.requested:  # Arrived during the epoch's last step, validation or saving.
          raise _interrupted(state, checkpoints)
        if progress.stop_reason:
          logging.info("Stopping early: %s.", progress.stop_reason)
          break

    best_state, _ = checkpoints.restore_best(state)
    test_batches = pipeline.make_eval_batches(splits.test, config.eval_batch_size, mesh)
    test_metrics = evaluate(eval_batch, best_state, test_batches)
    reporter.write(int(best_state.step), "test", test_metrics)
  finally:
    reporter.close()
    checkpoints.close()
  summary = make_summary(config, progress, test_metrics)
  _write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def _interrupted(state, checkpoints) -> TrainingInterrupted:
  return TrainingInterrupted(
      f"Stopped at step {int(state.step)}; the latest checkpoint in {checkpoints.directory} "
      "holds it. Rerun the same command to resume.")


def check_config(config, num_devices: int) -> None:
  """Fails early, before anything is written, on values that cannot work."""
  parallel.check_divisible(config.batch_size, "batch_size", num_devices)
  parallel.check_divisible(config.eval_batch_size, "eval_batch_size", num_devices)
  if config.monitor_mode not in ("min", "max"):
    raise ConfigError(f"config.monitor_mode={config.monitor_mode!r}; use 'min' or 'max'.")
  if config.num_epochs < 1:
    raise ConfigError(f"config.num_epochs={config.num_epochs}; train for at least 1 epoch.")
  if config.precision not in PRECISIONS:
    raise ConfigError(f"config.precision={config.precision!r}; use one of {sorted(PRECISIONS)}.")
  if config.on_nonfinite not in ("stop", "skip"):
    raise ConfigError(f"config.on_nonfinite={config.on_nonfinite!r}; use 'stop' or 'skip'.")
  for name in ("steps_per_call", "log_every_steps"):
    if config[name] < 1:
      raise ConfigError(f"config.{name}={config[name]}; use 1 or more.")
  if not 0 <= config.ema_decay < 1:
    raise ConfigError(f"config.ema_decay={config.ema_decay}; use 0 (off) or a decay in (0, 1) "
                      "such as 0.999.")


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


def check_model_fits(state, splits: data.Splits, task: tasks.Task, model_name: str) -> None:
  """Runs the model abstractly on one example so a shape mismatch is named before training."""
  example = jax.tree.map(lambda a: a[:1], splits.train)
  try:
    outputs = jax.eval_shape(lambda s, x: s.apply_model(s.params, x, train=False)[0],
                             state, example["inputs"])
    jax.eval_shape(task.loss, outputs, example["targets"])
  except Exception as e:  # Any error here means these inputs do not fit this model.
    raise ConfigError(
        f"Model {model_name!r} cannot take this data: inputs shaped "
        f"{example['inputs'].shape[1:]} ({example['inputs'].dtype}) per example and targets "
        f"shaped {example['targets'].shape[1:]} ({e.__class__.__name__}: "
        f"{str(e).splitlines()[0][:300]}). Pick a model made for this input shape "
        "(config.model.name), or set its size arguments in config.model.") from e


def create_state(config, steps_per_epoch: int, dims: dict | None = None) -> state_lib.TrainState:
  """The model, optimizer and schedule of `config`, initialised from its seed.

  `steps_per_epoch` counts batches; with gradient accumulation the schedule
  counts optimizer updates, `accumulate_steps` batches each. `dims` are the
  sizes the data decides (see `data_dims`). Built by one compiled program: run
  eagerly, every initialiser of every layer shape compiles on its own (~3 s
  for LeNet-5 on a CPU; ~1 s as one program).
  """
  updates_per_epoch = max(1, steps_per_epoch // config.optimizer.accumulate_steps)
  schedule = optim.make_schedule(config.schedule, config.optimizer.learning_rate,
                                 updates_per_epoch, updates_per_epoch * config.num_epochs)
  tx = optim.make_optimizer(config.optimizer, schedule)
  options = dict(ema_decay=config.ema_decay, compute_dtype=PRECISIONS[config.precision])

  def build():
    model_key, step_key = jax.random.split(jax.random.PRNGKey(config.seed))
    model = create_model(config.model, nnx.Rngs(params=model_key), dims)
    init.initialise(model, config.init, jax.random.fold_in(model_key, 1))
    return state_lib.create_train_state(model, tx, step_key, **options)

  return jax.jit(build, compiler_options=compiler.run_once_options())()


def start_from_checkpoint(state, source: str) -> state_lib.TrainState:
  """`state` afresh, with the parameters that match `source`'s best checkpoint copied in."""
  params, _, _ = checkpoint.load_matching_params(source, state.params)
  model = nnx.merge(state.graphdef, params, state.model_state)
  return state_lib.create_train_state(model, state.tx, state.rng, ema_decay=state.ema_decay,
                                      compute_dtype=state.compute_dtype)


def compile_steps(mesh, task=CLASSIFICATION, skip_nonfinite: bool = False, augment=None,
                  steps_per_call: int = 1, static_count: bool | None = None):
  """Compiled `train_steps` (chunks of up to `steps_per_call` steps) and `eval_step`.

  Both take their batches from data already on the devices, so a chunk is one
  dispatch with no host-to-device copies; the state is donated so XLA updates
  it in place. `augment(images, key)` (see jaxlearn.data.augment) runs inside
  the train step. The train function is called as
  `train_chunk(state, epoch, first, count)` for steps first..first+count-1 of
  a `pipeline.Epoch`, the eval one as `eval_batch(state, batches, i)`.

  `static_count` compiles one program per chunk length instead of one for all
  (default: on GPUs and TPUs, not on the CPU). A GPU runs a loop of unknown
  length by copying its condition to the host after every step, a sync per
  step; with the length known it queues the steps back to back. On the CPU the
  condition is read where it is computed, at no cost, and one program compiles once.
  """
  replicated = parallel.replicated(mesh)
  if static_count is None:
    static_count = mesh.devices.flat[0].platform != "cpu"

  def train_chunk(state, epoch, first, count):
    return train_steps(state, lambda i: epoch.batch(first + i), count, max_count=steps_per_call,
                       task=task, skip_nonfinite=skip_nonfinite, augment=augment)

  def eval_batch(state, batches, i):
    return eval_step(state, jax.tree.map(lambda b: b[i], batches), task=task)

  return (jax.jit(train_chunk, out_shardings=replicated, donate_argnums=0,
                  static_argnums=(3,) if static_count else (),
                  compiler_options=compiler.train_options()),
          jax.jit(eval_batch, out_shardings=replicated,
                  compiler_options=compiler.eval_options()))


def train_epoch(state, train_chunk, batches, first_step, steps_per_epoch, config, epoch,
                reporter, stop):
  """Runs the epoch's steps from `first_step` in chunks; logs every `config.log_every_steps`.

  Between chunks nothing waits for the device; the host reads results back
  once per logging window (and when a stop is requested).
  """
  epoch_metrics, window, consecutive_nonfinite = None, [], 0
  window_start, window_steps, step = time.time(), 0, first_step
  bar = reporting.progress_bar(config.progress_bar, steps_per_epoch, first_step,
                               f"epoch {epoch + 1}/{config.num_epochs}")
  while step < steps_per_epoch:
    count = min(config.steps_per_call, config.log_every_steps - window_steps,
                steps_per_epoch - step)
    state, metrics, per_step = train_chunk(state, batches, step, count)
    window.append((metrics, per_step, count))
    step, window_steps = step + count, window_steps + count
    bar.update(count)
    if window_steps == config.log_every_steps or step == steps_per_epoch or stop.requested:
      merged = _merge([m for m, _, _ in window])
      fetched = jax.device_get([p for _, p, _ in window])  # One read-back per window.
      steps = {k: np.concatenate([p[k][:n] for p, (_, _, n) in zip(fetched, window)])
               for k in ("loss", "grad_norm", "nonfinite")}
      consecutive_nonfinite = check_finite(steps, int(state.step), consecutive_nonfinite,
                                           config)
      scalars = _scalars(merged)
      scalars["images_per_second"] = window_steps * config.batch_size / (time.time() - window_start)
      reporter.write(int(state.step), "train", scalars, echo=bool(bar.disable))
      bar.set_postfix(loss=f"{scalars['loss']:.4f}", acc=f"{scalars.get('accuracy', 0):.4f}",
                      img_s=f"{scalars['images_per_second']:.0f}")
      epoch_metrics = merged if epoch_metrics is None else _merge_two(epoch_metrics, merged)
      window, window_start, window_steps = [], time.time(), 0
    if stop.requested:
      break
  bar.close()
  return state, _scalars(epoch_metrics)


def evaluate(eval_batch, state, batches) -> dict[str, float]:
  """Metrics over every (unpadded) example of a split of eval batches."""
  num_batches = jax.tree.leaves(batches)[0].shape[0]
  return _scalars(_merge([eval_batch(state, batches, i) for i in range(num_batches)]))


def check_finite(steps: dict, last_step: int, consecutive: int, config) -> int:
  """Stops the run at a NaN/Inf loss or gradient among a window's steps.

  `steps` holds per-step arrays ("loss", "grad_norm", "nonfinite") of the
  window's steps, the last of which is step number `last_step`. With
  config.on_nonfinite='skip' such steps were skipped; the run stops only once
  more than `max_consecutive_nonfinite` come in a row. Returns the number of
  non-finite steps the window ends with, to carry into the next one.
  """
  first_step = last_step - len(steps["nonfinite"]) + 1
  for offset, flag in enumerate(steps["nonfinite"]):
    consecutive = consecutive + 1 if flag else 0
    skipping = config.on_nonfinite == "skip"
    if flag and (not skipping or consecutive > config.max_consecutive_nonfinite):
      raise NonFiniteLossError(
          f"The training loss or gradient became non-finite at step {first_step + offset} "
          f"(loss {steps['loss'][offset]}, gradient norm {steps['grad_norm'][offset]})"
          + (f", after {consecutive} such steps in a row" if skipping else "") +
          ". Likely causes: a learning rate too high for this model (config.optimizer."
          f"learning_rate={config.optimizer.learning_rate}; try a tenth of it, a warm-up via "
          "config.schedule.warmup_epochs or config.optimizer.clip_norm), inputs that are not "
          "normalised" + (", or too little precision (config.precision='bf16'; try 'fp32')"
                           if config.precision != "fp32" else "") +
          ". The last good checkpoint in the workdir is kept: rerun with a lower learning rate "
          "to resume from it.")
  return consecutive


def record_epoch(progress: Progress, epoch, train_metrics, val_metrics, config,
                 seconds: float) -> bool:
  """Adds the epoch to `progress`; True if its validation metric is the best so far."""
  if config.monitor not in val_metrics:
    raise ConfigError(f"config.monitor={config.monitor!r} is not a validation metric; choose "
                      f"one of {sorted(val_metrics)}.")
  value = val_metrics[config.monitor]
  best = progress.best_value
  margin = config.early_stopping.min_delta
  improved = best is None or (value > best + margin if config.monitor_mode == "max"
                              else value < best - margin)
  progress.epochs_done = epoch + 1
  progress.train_seconds += seconds
  progress.history.append({"epoch": epoch + 1, "seconds": seconds,
                           **{f"train_{k}": v for k, v in train_metrics.items()},
                           **{f"val_{k}": v for k, v in val_metrics.items()}})
  if improved:
    progress.best_value, progress.best_epoch = value, epoch + 1
  logging.info("Epoch %d: val %s=%.4f (best %.4f at epoch %d), %.1fs.", epoch + 1,
               config.monitor, value, progress.best_value, progress.best_epoch, seconds)
  return improved


def early_stopping_reason(progress: Progress, config) -> str:
  """Why training should stop now (empty: it should not), by config.early_stopping."""
  patience = config.early_stopping.patience
  waited = progress.epochs_done - progress.best_epoch
  if not patience or waited < patience:
    return ""
  return (f"early stopping: val {config.monitor} has not improved by more than "
          f"{config.early_stopping.min_delta} for {waited} epochs (best "
          f"{progress.best_value:.6g} at epoch {progress.best_epoch})")


def lower_lr_on_plateau(state, progress: Progress, value: float, config):
  """The plateau schedule's step after validation: may lower the learning rate's scale."""
  before = progress.plateau.get("lr_scale", 1.0)
  progress.plateau = optim.plateau_update(progress.plateau, value, config.schedule,
                                          config.monitor_mode, config.optimizer.learning_rate)
  scale = progress.plateau["lr_scale"]
  if scale == before:
    return state
  logging.info("val %s has plateaued: learning rate lowered to %.3g.", config.monitor,
               scale * config.optimizer.learning_rate)
  return state.replace(opt_state=optim.set_lr_scale(state.opt_state, scale))


def make_summary(config, progress: Progress, test_metrics: dict) -> dict:
  best_val = next(h for h in progress.history if h["epoch"] == progress.best_epoch)
  return {
      **{f"test_{k}": v for k, v in test_metrics.items()},
      **{f"best_{k}": v for k, v in best_val.items() if k.startswith("val_")},
      "best_epoch": progress.best_epoch,
      "epochs_run": progress.epochs_done,
      "stop_reason": progress.stop_reason or f"completed config.num_epochs={config.num_epochs}",
      "train_seconds": progress.train_seconds,
      "history": progress.history,
      "config": config.to_dict(),
  }


def _merge(metrics_list: list):
  """The merge of a list of metric collections.

  Pairwise, by one compiled function, so lists of any length share one program
  (a single program for the whole list compiled once per length: ~0.05 s each).
  """
  return functools.reduce(_merge_two, metrics_list)


@jax.jit
def _merge_two(a, b):
  return a.merge(b)


@jax.jit
def _compute(metrics) -> dict:
  return metrics.compute()


def _scalars(metrics) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(_compute(metrics)).items()}


def _write_json(path: str, value) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2, default=str)
  os.replace(tmp, path)
