"""The training loop: config -> data -> train state -> compiled steps -> checkpoints -> summary.

`train_and_evaluate(config, workdir)` is the whole run; `jaxlearn.main` only
parses flags and calls it. Rerunning it on the same workdir resumes from the
`latest` checkpoint, and the `best` checkpoint is what the test split sees.
Each concern lives in its own module: `config` (checks), `build` (task and
state), `compiled` (the programs), `epoch` (running them), `nonfinite`,
`early_stopping` and `plateau` (the policies), `progress` (records, summary).
"""

import dataclasses
import json
import os
import time

from absl import logging
import jax

from jaxlearn import build, checkpoint, compiled, data, distill, distributed, divergence
from jaxlearn import interrupts, metric_values, parallel, plateau, reporting
from jaxlearn import config as config_lib
from jaxlearn import workdir as workdir_lib
from jaxlearn import state as state_lib
from jaxlearn.data import augment as augmentation
from jaxlearn.data import pipeline, streaming
from jaxlearn.epoch import EpochRunner, evaluate
from jaxlearn.errors import NonFiniteLossError
from jaxlearn.progress import Progress, make_summary, record_epoch


class TrainingInterrupted(Exception):
  """Raised after SIGINT/SIGTERM once the `latest` checkpoint holds the current step."""


def train_and_evaluate(config, workdir: str, raw: data.RawData | None = None) -> dict:
  """Trains, keeps the best checkpoint by validation metric, tests it; returns the summary.

  `raw` replaces the dataset config.data names with your own (see
  `jaxlearn.data.from_arrays` / `from_source`). Nothing is written to `workdir`
  until the config, the data and the model have been checked, and never when
  the workdir holds a run of another config or another process is using it.
  """
  config_lib.validate(config, jax.device_count())
  workdir_lib.check_same_run(workdir, config)
  compiled.use_compilation_cache(config.compilation_cache_dir)
  mesh = parallel.make_mesh()
  raw = raw if raw is not None else data.load_raw(config.data, config.seed)
  splits = data.make_splits(raw, config.data, config.seed)
  task, splits = build.prepare_task(config, splits)
  # Streamed, each process reads an equal shard of the examples and makes its part of a batch.
  shards = jax.process_count() if config.data.pipeline == "grain" else 1
  steps_per_epoch = pipeline.num_train_steps(len(splits.train["targets"]) // shards,
                                             config.batch_size // shards)
  dims = build.data_dims(splits, task)
  state = build.create_state(config, steps_per_epoch, dims)
  build.check_model_fits(state, splits, task, config.model.name)
  loss_fn = _distillation_loss(config, task, splits)
  shardings = parallel.state_sharding(state, mesh, config.sharding)
  state = jax.device_put(state, shardings)
  here, total = parallel.bytes_per_device(state)
  logging.info("Train state: %.2f MB per device of %.2f MB (config.sharding=%s).", here / 1e6,
               total / 1e6, config.sharding)
  logging.info("Model %s: %d parameters; %d train / %d val / %d test examples; %d device(s).",
               config.model.name, state_lib.num_params(state), len(splits.train["targets"]),
               len(splits.val["targets"]), len(splits.test["targets"]), jax.device_count())
  with workdir_lib.claim(workdir, config, distributed.is_primary()) as saved_config:
    checkpoints = checkpoint.Checkpoints(workdir)
    try:
      state, progress = _resume(state, checkpoints, config, saved_config, shardings)
      _write_json(os.path.join(workdir, workdir_lib.CONFIG_FILE),
                  workdir_lib.config_record(config))
      _write_json(os.path.join(workdir, "preprocessing.json"),
                  {**splits.preprocessing, "model_dims": dims})
      progress, test_metrics = _train_and_test(config, workdir, mesh, task, splits, state,
                                               steps_per_epoch, progress, checkpoints, loss_fn,
                                               shardings)
    except NonFiniteLossError as e:
      raise NonFiniteLossError(f"{e} {_what_is_kept(checkpoints, workdir)}") from None
    finally:
      checkpoints.close()
    summary = make_summary(config, progress, test_metrics)
    _write_json(os.path.join(workdir, "summary.json"), summary)
  if progress.stop_reason.startswith("diverged"):
    raise divergence.error(summary, config)
  return summary


def _train_and_test(config, workdir, mesh, task, splits, state, steps_per_epoch, progress,
                    checkpoints, loss_fn=None, shardings=None) -> tuple[Progress, dict]:
  """The epochs still to run, each validated and checkpointed; then the best one tested."""
  streamed = config.data.pipeline == "grain"
  steps_per_call = config.steps_per_call if not streamed else streaming.steps_per_call(
      config.steps_per_call, splits.train["inputs"], config.batch_size // jax.process_count())
  train_chunk, eval_batch = compiled.compile_steps(
      mesh, task, skip_nonfinite=config.on_nonfinite == "skip",
      augment=augmentation.make_augment(config.augment), steps_per_call=steps_per_call,
      cpu_kernels=config.cpu_kernels, loss_fn=loss_fn, state_sharding=shardings,
      host_batches=streamed)
  epoch_batches = (_streamed_epochs(config, splits.train, mesh, steps_per_epoch, steps_per_call)
                   if streamed else _device_epochs(config, splits.train, mesh))
  if streamed:
    chunk = train_chunk
    train_chunk = lambda state, stream, first, count: chunk(state, stream.take(count), first,
                                                            count)
  val_batches = pipeline.make_eval_batches(splits.val, config.eval_batch_size, mesh)
  reporter = reporting.Reporter(workdir if distributed.is_primary() else None)
  chance = divergence.chance_accuracy(task.name, splits.val["targets"])
  try:
    with interrupts.catch_stop_signals() as stop:
      runner = EpochRunner.from_config(config, train_chunk, steps_per_epoch, reporter, stop,
                                       steps_per_call)
      last_epoch = config.num_epochs if not progress.stop_reason else progress.epochs_done
      for epoch in range(progress.epochs_done, last_epoch):
        started = time.time()
        batches = epoch_batches(epoch, progress.data_position)
        state, train_metrics = runner.train(state, batches, epoch,
                                            int(state.step) - epoch * steps_per_epoch,
                                            carried=progress.partial_epoch)
        if int(state.step) < (epoch + 1) * steps_per_epoch:  # Stopped mid-epoch.
          progress.train_seconds += time.time() - started
          progress.partial_epoch = metric_values.to_record(runner.partial)
          progress.data_position = batches.state() if streamed else None
          checkpoints.save_latest(state, dataclasses.asdict(progress))
          raise _interrupted(state, checkpoints)
        progress.partial_epoch, progress.data_position = [], None
        val_metrics = evaluate(eval_batch, state, val_batches)
        reporter.write(int(state.step), "val", val_metrics)
        if record_epoch(progress, epoch, train_metrics, val_metrics, config,
                        time.time() - started, chance):
          checkpoints.save_best(state, dataclasses.asdict(progress))
        if config.schedule.name == "plateau":
          state, progress.plateau = plateau.after_validation(
              state, progress.plateau, val_metrics[config.monitor], config)
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
    getattr(epoch_batches, "close", lambda: None)()
  return progress, test_metrics


def _device_epochs(config, train_split, mesh):
  """`epoch_batches(epoch, position)` of the memory pipeline: the split lives on the devices."""
  arrays = pipeline.to_device(train_split, mesh)
  batcher = pipeline.make_epoch_batcher(config.batch_size, mesh)
  return lambda epoch, position: batcher(arrays, config.seed, epoch)


def _streamed_epochs(config, train_split, mesh, steps_per_epoch, steps_per_call):
  """`epoch_batches(epoch, position)` of the Grain pipeline: one stream for the whole run,
  opened at the first epoch asked for (at `position` when resuming mid-epoch)."""
  streams = []

  def epoch_batches(epoch, position):
    if not streams:
      start = position["batch"] if position else epoch * steps_per_epoch
      streams.append(streaming.Stream(
          train_split, batch_size=config.batch_size, seed=config.seed, epochs=config.num_epochs,
          workers=config.data.workers, steps_per_call=steps_per_call,
          sharding=parallel.stacked_batch_sharding(mesh), start=start))
    return streams[0]

  epoch_batches.close = lambda: [s.close() for s in streams]
  return epoch_batches


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


def _write_json(path: str, value) -> None:
  """Writes `value` whole (renamed into place); only the primary process writes."""
  if not distributed.is_primary():
    return
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(reporting.json_safe(value), f, indent=2, default=str, allow_nan=False)
  os.replace(tmp, path)
