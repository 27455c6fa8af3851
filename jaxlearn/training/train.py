"""The training loop: config -> data -> train state -> compiled steps -> checkpoints -> summary.

`train_and_evaluate(config, workdir)` is the whole run; `jaxlearn.main` only
parses flags and calls it. Rerunning it on the same workdir resumes from the
`latest` checkpoint, and the `best` checkpoint is what the test split sees.
Each concern lives in its own module: `config` (checks), `runs.build` (task and
state), `data.pipeline` (the training batches, in memory or streamed),
`compiled` (the programs), `epoch` (running them), `policies` (what each
validation decides), `progress` (records, summary), `runs.workdir` (the files).
"""

import dataclasses
import os
import time
from typing import Callable

from absl import logging
import jax
import numpy as np

from jaxlearn import config as config_lib, data
from jaxlearn.core import parallel, state as state_lib, tasks
from jaxlearn.data import augment as augmentation, pipeline, sources
from jaxlearn.errors import NonFiniteLossError, TrainingInterrupted
from jaxlearn.runs import build, checkpoint, diagnosis, tracking, workdir as workdir_lib
from jaxlearn.training import compiled, distill, distributed, divergence, interrupts, metric_values
from jaxlearn.training import layer_stats, policies, reporting
from jaxlearn.training.epoch import EpochRunner, evaluate
from jaxlearn.training.progress import Progress, make_summary


def train_and_evaluate(config, workdir: str, raw: data.RawData | None = None,
                       after_epoch: Callable[[int, dict], str] | None = None) -> dict:
  """Trains, keeps the best checkpoint by validation metric, tests it; returns the summary.

  Args:
    config: a config from `configs/` (or `jaxlearn.config.default_config()` with
      fields changed); it is checked before anything is read or written.
    workdir: the run's folder (see `jaxlearn.runs.workdir.RunDir`); a rerun on
      the same one resumes.
    raw: your own dataset instead of the one config.data names (see
      `jaxlearn.data.from_arrays` / `from_source`).
    after_epoch: `after_epoch(epoch, val_metrics) -> reason`, called after each
      epoch's own policies; a non-empty reason stops the run there (a search's
      pruner, see `jaxlearn.sweeps.search`).

  Returns:
    The summary (also WORKDIR/summary.json): `test_*` metrics of the best
    checkpoint, `best_val_*`, `best_epoch`, `stop_reason`, the per-epoch
    `history` and the config.

  Nothing is written to `workdir` until the config, the data and the model
  have been checked, and never when the workdir holds a run of another config
  or another process is using it.

  >>> from jaxlearn.config import default_config
  >>> config = default_config()
  >>> config.data.name, config.task = "synthetic_linear", "regression"
  >>> config.model.name = "linear_regression"
  >>> config.optimizer.name, config.optimizer.learning_rate = "sgd", 0.03
  >>> config.batch_size, config.num_epochs = 10, 3
  >>> config.monitor, config.monitor_mode = "mse", "min"
  >>> config.progress_bar, config.compilation_cache_dir = False, ""
  >>> import tempfile
  >>> summary = train_and_evaluate(config, tempfile.mkdtemp())
  >>> summary["test_mse"] < 0.01, summary["epochs_run"]
  (True, 3)
  """
  workdir = str(workdir)
  config_lib.validate(config, jax.device_count())
  tracking.check_wandb(config)
  workdir_lib.check_same_run(workdir, config)
  compiled.use_compilation_cache(config.compilation_cache_dir)
  mesh = parallel.make_mesh()
  raw = raw if raw is not None else data.load_raw(config.data, config.seed)
  splits = data.make_splits(raw, config.data, config.seed)
  task, splits = build.prepare_task(config, splits)
  batches = pipeline.train_batches(config, splits.train, mesh)
  dims = build.data_dims(splits, task)
  state = build.checked_state(config, splits, task, batches.steps_per_epoch)
  loss_fn = _distillation_loss(config, task, splits)
  shardings = parallel.state_sharding(state, mesh, config.sharding)
  state = jax.device_put(state, shardings)
  here, total = parallel.bytes_per_device(state)
  logging.info("Train state: %.2f MB per device of %.2f MB (config.sharding=%s).", here / 1e6,
               total / 1e6, config.sharding)
  logging.info("Model %s: %d parameters; %d train / %d val / %d test examples; %d device(s).",
               config.model.name, state_lib.num_params(state), len(splits.train["targets"]),
               len(splits.val["targets"]), len(splits.test["targets"]), jax.device_count())
  model_summary = build.summarize_state(state, splits.train["inputs"][:1], config)
  run_dir = workdir_lib.RunDir(workdir)
  with workdir_lib.claim(workdir, config, distributed.is_primary()) as saved_config:
    checkpoints = checkpoint.Checkpoints(workdir)
    wandb = tracking.open_wandb(config, workdir) if distributed.is_primary() else None
    loop = _Loop(config, run_dir, mesh, task, splits, batches, checkpoints, shardings, loss_fn,
                 after_epoch, wandb)
    test_metrics = None
    try:
      state, progress = _resume(state, checkpoints, config, saved_config, shardings)
      _write_json(run_dir.config, run_record(config))
      _write_json(run_dir.preprocessing, {**splits.preprocessing, "model_dims": dims})
      _write_text(run_dir.model_summary, str(model_summary))
      progress, test_metrics = _train_and_test(loop, state, progress)
    except NonFiniteLossError as e:
      raise NonFiniteLossError(f"{e} {_what_is_kept(checkpoints, workdir)}") from None
    finally:
      checkpoints.close()
      if wandb is not None and test_metrics is None:  # The run failed or was stopped.
        wandb.finish()
    summary = make_summary(config, progress, test_metrics)
    _write_json(run_dir.summary, summary)
    if distributed.is_primary():
      tracking.write_hparams(workdir, config, summary)
      _diagnose(workdir, config, splits)
    if wandb is not None:
      wandb.summarise(summary)
      wandb.finish()
  if progress.stop_reason.startswith("diverged"):
    raise divergence.error(summary, config)
  return summary


def _diagnose(workdir: str, config, splits) -> None:
  """The run's diagnosis (see `jaxlearn.runs.diagnosis`) into WORKDIR/diagnosis.json, and
  onto the console when it finds something."""
  records = diagnosis.read_records(workdir)
  records.class_counts = diagnosis.class_counts(splits.train["targets"], config.task)
  # Compared in memory only: a streamed training split is larger than memory by design.
  in_memory = isinstance(splits.train["inputs"], np.ndarray)
  if in_memory and (records.summary or {}).get("test_accuracy", 0) >= 1.0:
    records.duplicates = diagnosis.overlap(splits.train["inputs"], splits.test["inputs"])
  findings = diagnosis.diagnose(records)
  diagnosis.write(workdir, findings)
  if findings:
    logging.info("Diagnosis (python -m jaxlearn.diagnose --workdir=%s): %s", workdir,
                 diagnosis.paragraph(findings))


@dataclasses.dataclass
class _Loop:
  """What every epoch of one run shares, built once by `train_and_evaluate`."""
  config: object
  run_dir: workdir_lib.RunDir
  mesh: jax.sharding.Mesh
  task: tasks.Task
  splits: data.Splits
  batches: pipeline.MemoryBatches | pipeline.StreamedBatches
  checkpoints: checkpoint.Checkpoints
  shardings: object  # of the train state (parallel.state_sharding)
  loss_fn: Callable | None  # the distillation loss, or None for the task's
  after_epoch: Callable[[int, dict], str] | None = None  # see train_and_evaluate
  wandb: tracking.WandbRun | None = None  # config.logging.wandb_project


def _train_and_test(loop: _Loop, state, progress: Progress) -> tuple[Progress, dict]:
  """The epochs still to run, each validated and checkpointed; then the best one tested."""
  config, batches, checkpoints = loop.config, loop.batches, loop.checkpoints
  train_chunk, eval_batch = compiled.compile_steps(
      loop.mesh, loop.task, skip_nonfinite=config.on_nonfinite == "skip",
      augment=augmentation.make_augment(config.augment), steps_per_call=batches.steps_per_call,
      cpu_kernels=config.cpu_kernels, loss_fn=loop.loss_fn, state_sharding=loop.shardings,
      host_batches=batches.host_batches)
  val_batches = pipeline.make_eval_batches(loop.splits.val, config.eval_batch_size, loop.mesh)
  reporter = reporting.Reporter(loop.run_dir.root if distributed.is_primary() else None,
                                loop.wandb)
  chance = divergence.chance_accuracy(loop.task.name, loop.splits.val["targets"])
  steps_per_epoch = batches.steps_per_epoch
  stats = _layer_stats(config, loop)
  try:
    with interrupts.catch_stop_signals() as stop:
      runner = EpochRunner.from_config(config, train_chunk, steps_per_epoch, reporter, stop,
                                       batches.steps_per_call)
      last_epoch = config.num_epochs if not progress.stop_reason else progress.epochs_done
      for epoch in range(progress.epochs_done, last_epoch):
        started = time.time()
        state, train_metrics = runner.train(state, batches.epoch(epoch, progress.data_position),
                                            epoch, int(state.step) - epoch * steps_per_epoch,
                                            carried=progress.partial_epoch)
        if int(state.step) < (epoch + 1) * steps_per_epoch:  # Stopped mid-epoch.
          progress.train_seconds += time.time() - started
          progress.partial_epoch = metric_values.to_record(runner.partial)
          progress.data_position = batches.state()
          checkpoints.save_latest(state, dataclasses.asdict(progress))
          raise _interrupted(state, checkpoints)
        progress.partial_epoch, progress.data_position = [], None
        val_metrics = evaluate(eval_batch, state, val_batches)
        reporter.write(int(state.step), "val", val_metrics)
        if stats is not None:
          layer_stats.append(loop.run_dir.layer_stats, epoch + 1, int(state.step), stats(state))
        state = policies.after_validation(state, progress, epoch, train_metrics, val_metrics,
                                          config, time.time() - started, chance,
                                          save_best=checkpoints.save_best)
        if not progress.stop_reason and loop.after_epoch is not None:
          progress.stop_reason = loop.after_epoch(epoch, val_metrics)
        checkpoints.save_latest(state, dataclasses.asdict(progress))
        if stop.requested:  # Arrived during the epoch's last step, validation or saving.
          raise _interrupted(state, checkpoints)
        if progress.stop_reason:
          logging.info("Stopping early: %s.", progress.stop_reason)
          break

    best_state, _ = checkpoints.restore_best(state)
    test_batches = pipeline.make_eval_batches(loop.splits.test, config.eval_batch_size,
                                              loop.mesh)
    test_metrics = evaluate(eval_batch, best_state, test_batches)
    reporter.write(int(best_state.step), "test", test_metrics)
  finally:
    reporter.close()
    batches.close()
  return progress, test_metrics


def _layer_stats(config, loop: "_Loop"):
  """The per-epoch layer statistics function, or None (switched off, or not this process's
  to write: the primary writes them, from the data it holds)."""
  if not config.logging.layer_stats or jax.process_count() > 1:
    return None
  batch = layer_stats.first_batch(loop.splits.train, config.batch_size)
  return layer_stats.make(loop.task, batch)


def _distillation_loss(config, task, splits):
  """The student's loss when config.distill.teacher names a finished run, else None."""
  if not config.distill.teacher:
    return None
  teacher = distill.load_teacher(config.distill.teacher, splits.preprocessing,
                                 build.num_outputs(task, splits))
  logging.info("Distilling from %s (temperature %g, alpha %g).", config.distill.teacher,
               config.distill.temperature, config.distill.alpha)
  return distill.make_loss(teacher, task.loss, config.distill.temperature, config.distill.alpha)


def _resume(state, checkpoints, config, saved_config, shardings) -> tuple[state_lib.TrainState,
                                                                           Progress]:
  """The workdir's latest state and progress, or a fresh run's (optionally transfer-learned)."""
  state, saved = checkpoints.restore_latest(state)
  if not saved:
    if config.init.from_checkpoint:
      state = jax.device_put(build.start_from_checkpoint(state, config.init.from_checkpoint,
                                                         config.init.from_checkpoint_include),
                             shardings)
    return state, Progress()
  progress = Progress(**saved)
  if progress.stop_reason and _may_continue(progress, config, saved_config):
    logging.info("%s stopped early (%s); continuing, as config.num_epochs or "
                 "config.early_stopping.patience was raised.", checkpoints.directory,
                 progress.stop_reason)
    progress.stop_reason = ""
  if progress.stop_reason:
    logging.info("%s holds a run that stopped early (%s); testing its best checkpoint.",
                 checkpoints.directory, progress.stop_reason)
  elif progress.epochs_done >= config.num_epochs:
    logging.info("%s already holds all %d epochs; testing its best checkpoint. Raise "
                 "--config.num_epochs to train on.", checkpoints.directory, config.num_epochs)
  else:
    logging.info("Resuming from %s at step %d (epoch %d).", checkpoints.directory,
                 int(state.step), progress.epochs_done + 1)
  return state, progress


def _may_continue(progress: Progress, config, saved_config: dict | None) -> bool:
  """Whether a run that stopped early gets more epochs: raised num_epochs or patience."""
  if progress.epochs_done >= config.num_epochs or not progress.stop_reason.startswith("early"):
    return False
  saved = saved_config or {}
  more_epochs = config.num_epochs > saved.get("num_epochs", config.num_epochs)
  saved_patience = saved.get("early_stopping", {}).get("patience",
                                                       config.early_stopping.patience)
  more_patience = (config.early_stopping.patience == 0
                   or config.early_stopping.patience > saved_patience)
  return more_epochs or more_patience


def _what_is_kept(checkpoints, workdir: str) -> str:
  """After a failed run: which checkpoints remain, and how to go on from them."""
  latest = checkpoints.latest_step()
  if latest is None:
    return ("No checkpoint was saved before it (it happened in the first epoch); rerun with "
            "the fix on the same --workdir.")
  return (f"The checkpoints from before it are kept (latest: step {latest}, in {workdir}). "
          "Rerun with the fix in a new --workdir, from scratch or starting from those weights "
          f"with --config.init.from_checkpoint={workdir}.")


def _interrupted(state, checkpoints) -> TrainingInterrupted:
  return TrainingInterrupted(
      f"Stopped at step {int(state.step)}; the latest checkpoint in {checkpoints.directory} "
      "holds it. Rerun the same command to resume.")


def run_record(config) -> dict:
  """WORKDIR/config.json: the config, with the data folder the run read (resolved, absolute),
  so that evaluating it later from another shell or folder finds the same data."""
  record = workdir_lib.config_record(config)
  root = sources.resolve_data_dir(config.data)
  record["data"]["dir"] = os.path.abspath(os.path.expanduser(root)) if root else ""
  return record


def _write_json(path: str, value) -> None:
  """Writes `value` whole (renamed into place); only the primary process writes."""
  if distributed.is_primary():
    workdir_lib.write_json(path, value)


def _write_text(path: str, text: str) -> None:
  if distributed.is_primary():
    workdir_lib.write_text(path, text)
