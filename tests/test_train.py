"""The loop end to end on a tiny generated dataset: outputs, resume, best checkpoint, failures."""

import json
import os
import re

import jax
import ml_collections
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from jaxlearn import data
from jaxlearn.core import parallel
from jaxlearn.data import pipeline
from jaxlearn.errors import CheckpointError, ConfigError, NonFiniteLossError
from jaxlearn.errors import TrainingInterrupted, WorkdirError
from jaxlearn.runs import build, checkpoint, workdir as workdir_lib
from jaxlearn.training import compiled, epoch as epoch_lib, train


def _files(directory) -> dict[str, bytes]:
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out


def _steps(workdir, series) -> list[int]:
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints", series)))


def test_run_writes_summary_metrics_tensorboard_and_both_checkpoints(small_config, tmp_path):
  workdir = str(tmp_path / "run")
  summary = train.train_and_evaluate(small_config, workdir)

  with open(os.path.join(workdir, "summary.json")) as f:
    on_disk = json.load(f)
  for key in ("test_accuracy", "best_val_accuracy", "best_epoch", "epochs_run", "train_seconds",
              "config"):
    assert key in on_disk
  assert on_disk["epochs_run"] == 2 and on_disk["config"]["batch_size"] == 64
  assert summary["test_accuracy"] > 0.5  # The fake classes are bars at distinct rows.

  events = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard"))
  events.Reload()
  tags = events.Tags()["scalars"]
  for tag in ("train/loss", "train/accuracy", "train/learning_rate", "train/grad_norm",
              "val/accuracy", "test/accuracy"):
    assert tag in tags
  assert [e.step for e in events.Scalars("val/accuracy")] == [9, 18]  # 576 // 64 steps/epoch.

  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  assert {line["split"] for line in lines} == {"train", "val", "test"}
  assert all(np.isfinite(line["loss"]) for line in lines)
  # TensorBoard holds the very values metrics.jsonl holds, step by step.
  logged = {(line["split"], line["step"], name): value for line in lines
            for name, value in line.items() if name not in ("split", "step")}
  compared = 0
  for tag in tags:
    split, name = tag.split("/", 1)
    for event in events.Scalars(tag):
      assert event.value == pytest.approx(logged[(split, event.step, name)], rel=1e-6), tag
      compared += 1
  assert compared >= 40

  assert _steps(workdir, "latest") == [9, 18]  # The newest two.
  assert _steps(workdir, "best") == [9 * on_disk["best_epoch"]]


def test_best_checkpoint_holds_the_best_validation_epoch(small_config, tmp_path):
  small_config.num_epochs = 3
  workdir = str(tmp_path / "run")
  summary = train.train_and_evaluate(small_config, workdir)
  history = summary["history"]
  best = max(history, key=lambda h: h["val_accuracy"])
  assert summary["best_epoch"] == best["epoch"]
  assert summary["best_val_accuracy"] == best["val_accuracy"]

  # Evaluating the restored best checkpoint reproduces its validation accuracy.
  mesh = parallel.make_mesh()
  splits = pipeline.make_splits(data.load_raw(small_config.data), small_config.data, 0)
  state = build.create_state(small_config, 9)
  restored, progress = checkpoint.Checkpoints(workdir).restore_best(state)
  assert progress["best_epoch"] == best["epoch"]
  _, eval_batch = compiled.compile_steps(mesh)
  val = epoch_lib.evaluate(eval_batch, jax.device_put(restored, parallel.replicated(mesh)),
                       pipeline.make_eval_batches(splits.val, 80, mesh))
  assert val["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)


def test_rerun_resumes_from_latest_and_keeps_history(small_config, tmp_path):
  workdir = str(tmp_path / "run")
  small_config.num_epochs = 1
  first = train.train_and_evaluate(small_config, workdir)
  small_config.num_epochs = 3
  resumed = train.train_and_evaluate(small_config, workdir)
  assert resumed["epochs_run"] == 3
  assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
  assert resumed["history"][0] == first["history"][0]
  assert _steps(workdir, "latest") == [18, 27]


def test_resumed_run_equals_uninterrupted_run(small_config, tmp_path):
  # num_epochs changes between the two calls, so use a schedule that does not depend on it.
  small_config.schedule.name = "constant"
  straight = train.train_and_evaluate(small_config, str(tmp_path / "straight"))
  small_config.num_epochs = 1
  train.train_and_evaluate(small_config, str(tmp_path / "split"))
  small_config.num_epochs = 2
  resumed = train.train_and_evaluate(small_config, str(tmp_path / "split"))
  assert resumed["history"][1]["val_loss"] == pytest.approx(straight["history"][1]["val_loss"],
                                                            rel=1e-5)


def test_resume_restores_batch_norm_statistics_ema_and_the_schedule(small_config, tmp_path):
  """A model with batch norm and dropout, an EMA and a decaying schedule, resumed mid-run."""
  small_config.model = ml_collections.ConfigDict({"name": "mlp", "hidden": (32,),
                                                  "batch_norm": True, "dropout": 0.3})
  small_config.ema_decay = 0.9
  small_config.schedule.name = "step"  # Halves each epoch: depends on the epoch, not the run.
  small_config.schedule.step_size = 1
  small_config.schedule.gamma = 0.5
  straight = str(tmp_path / "straight")
  train.train_and_evaluate(small_config, straight)
  split = str(tmp_path / "split")
  small_config.num_epochs = 1
  train.train_and_evaluate(small_config, split)
  small_config.num_epochs = 2
  resumed = train.train_and_evaluate(small_config, split)
  assert resumed["history"][1]["train_learning_rate"] == pytest.approx(5e-3)

  template = build.create_state(small_config, 9)
  a, _ = checkpoint.Checkpoints(straight).restore_latest(template)
  b, _ = checkpoint.Checkpoints(split).restore_latest(template)
  assert int(a.step) == int(b.step) == 18
  for part in ("params", "model_state", "ema_params", "opt_state", "rng"):
    for x, y in zip(jax.tree.leaves(getattr(a, part)), jax.tree.leaves(getattr(b, part))):
      np.testing.assert_allclose(np.asarray(x, np.float64) if x.dtype != np.uint32 else x,
                                 np.asarray(y, np.float64) if y.dtype != np.uint32 else y,
                                 rtol=1e-5, atol=1e-6, err_msg=part)
  # Batch norm's running statistics moved away from their initial values.
  assert not np.allclose(jax.tree.leaves(a.model_state)[0], jax.tree.leaves(
      template.model_state)[0])


@pytest.mark.parametrize("mode,scripted,best_epoch", [("max", [0.5, 0.9, 0.6], 2),
                                                      ("min", [0.5, 0.2, 0.4], 2)])
def test_the_best_checkpoint_is_the_best_epoch_in_either_mode(small_config, tmp_path,
                                                             monkeypatch, mode, scripted,
                                                             best_epoch):
  real_evaluate = train.evaluate
  values = iter(scripted)

  def evaluate(eval_batch, state, batches):
    metrics = real_evaluate(eval_batch, state, batches)
    if len(batches["inputs"]) == 1:  # Validation: one batch (the test split has two).
      metrics["loss"] = next(values)
    return metrics

  monkeypatch.setattr(train, "evaluate", evaluate)
  small_config.num_epochs = 3
  small_config.monitor, small_config.monitor_mode = "loss", mode
  small_config.divergence.patience = 0
  workdir = str(tmp_path / "run")
  summary = train.train_and_evaluate(small_config, workdir)
  assert summary["best_epoch"] == best_epoch
  assert _steps(workdir, "best") == [9 * best_epoch]  # Not overwritten by the worse epoch 3.


def test_checkpoint_of_another_model_is_refused_and_workdir_untouched(small_config, tmp_path):
  workdir = str(tmp_path / "run")
  small_config.num_epochs = 1
  train.train_and_evaluate(small_config, workdir)
  before = _files(workdir)
  small_config.model.num_classes = 12
  with pytest.raises(WorkdirError, match=r"holds a run of another config \(model\.num_classes: "
                     r"'<unset>' there, 12 now\)"):
    train.train_and_evaluate(small_config, workdir)
  assert _files(workdir) == before
  # A workdir without config.json (say, from an older jaxlearn): the checkpoint itself refuses.
  os.remove(os.path.join(workdir, "config.json"))
  before = _files(workdir)
  with pytest.raises(CheckpointError) as error:
    train.train_and_evaluate(small_config, workdir)
  message = str(error.value)
  assert "does not match the configured model and optimizer" in message
  assert "params/fc2/kernel is (84, 10) in the checkpoint but (84, 12) in the model" in message
  assert "Use a new --workdir" in message
  assert _files(workdir) == before


def test_corrupt_checkpoint_is_reported(small_config, tmp_path):
  workdir = str(tmp_path / "run")
  small_config.num_epochs = 1
  train.train_and_evaluate(small_config, workdir)
  step_dir = os.path.join(workdir, "checkpoints", "latest", "9")
  for root, _, names in os.walk(step_dir):
    for name in names:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  small_config.num_epochs = 2
  with pytest.raises(CheckpointError, match="could not be read .* corrupt or incomplete. Move "
                     "that step directory aside"):
    train.train_and_evaluate(small_config, workdir)


def _allow_learning_rate_change(monkeypatch):
  """These tests blow up epoch 2 of a run by raising its learning rate on the same workdir."""
  monkeypatch.setattr(workdir_lib, "MAY_CHANGE",
                      workdir_lib.MAY_CHANGE | {"optimizer.learning_rate", "on_nonfinite"})


def test_non_finite_loss_stops_with_message_and_keeps_last_good_checkpoint(small_config,
                                                                         tmp_path, monkeypatch):
  _allow_learning_rate_change(monkeypatch)
  workdir = str(tmp_path / "run")
  small_config.num_epochs = 1
  train.train_and_evaluate(small_config, workdir)
  small_config.num_epochs = 2
  small_config.optimizer.learning_rate = 1e12
  with pytest.raises(NonFiniteLossError, match=r"The training loss or gradient became non-finite "
                     r"at step (\d+) \(loss nan, .*Likely causes: a learning rate too high .*"
                     r"learning_rate=1000000000000\.0.*The checkpoints from before it are kept "
                     r"\(latest: step 9, in ") as error:
    train.train_and_evaluate(small_config, workdir)
  assert 10 <= int(re.search(r"at step (\d+)", str(error.value)).group(1)) <= 18  # Epoch 2.
  assert _steps(workdir, "latest") == [9]
  assert _steps(workdir, "best") == [9]


def test_skip_mode_skips_non_finite_steps_until_too_many_come_in_a_row(small_config, tmp_path,
                                                                      monkeypatch):
  _allow_learning_rate_change(monkeypatch)
  workdir = str(tmp_path / "run")
  small_config.num_epochs = 1
  train.train_and_evaluate(small_config, workdir)
  small_config.num_epochs = 2
  small_config.optimizer.learning_rate = 1e12
  small_config.on_nonfinite = "skip"
  small_config.max_consecutive_nonfinite = 3
  with pytest.raises(NonFiniteLossError, match=r"non-finite at step \d+ \(loss .*\), after 4 "
                     r"such steps in a row\. Likely causes"):
    train.train_and_evaluate(small_config, workdir)
  assert _steps(workdir, "latest") == [9]


def test_non_finite_loss_in_a_fresh_run_promises_no_checkpoint(small_config, tmp_path):
  small_config.optimizer.learning_rate = 1e12
  with pytest.raises(NonFiniteLossError, match=r"No checkpoint was saved before it \(it happened "
                     r"in the first epoch\)") as error:
    train.train_and_evaluate(small_config, str(tmp_path / "run"))
  assert "kept" not in str(error.value)
  # Nothing was checkpointed, so the same workdir takes a corrected config.
  small_config.optimizer.learning_rate = 1e-2
  small_config.num_epochs = 1
  assert train.train_and_evaluate(small_config, str(tmp_path / "run"))["epochs_run"] == 1


@pytest.mark.parametrize("static_count", [False, True], ids=["one_program", "per_length"])
def test_an_epoch_after_the_first_compiles_nothing(small_config, static_count):
  compiles = []

  def count_compiles(event, duration, **kwargs):
    del duration, kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(event)

  mesh = parallel.make_mesh()
  splits = pipeline.make_splits(data.load_raw(small_config.data), small_config.data, 0)
  state = jax.device_put(build.create_state(small_config, 9), parallel.replicated(mesh))
  train_chunk, _ = compiled.compile_steps(mesh, steps_per_call=small_config.steps_per_call,
                                       static_count=static_count)
  batcher = pipeline.make_epoch_batcher(64, mesh)
  arrays = pipeline.to_device(splits.train, mesh)

  def epoch(state, number, first_step):
    batches = batcher(arrays, 0, number)
    return _runner(small_config, train_chunk).train(state, batches, number, first_step)[0]

  jax.monitoring.register_event_duration_secs_listener(count_compiles)
  try:
    # The first epoch compiles the chunk of steps and the merge of each window's chunks.
    state = epoch(state, 0, first_step=0)
    compiled_in_first = len(compiles)
    state = epoch(state, 1, first_step=0)  # Batches none seen before: compiles nothing.
  finally:
    jax.monitoring.unregister_event_duration_listener(count_compiles)
  assert compiled_in_first > 0
  assert len(compiles) == compiled_in_first


def test_chunks_of_known_length_train_exactly_as_one_program_for_all_lengths(small_config):
  """The GPU/TPU form (a program per chunk length) must compute what the CPU form does."""
  mesh = parallel.make_mesh()
  splits = pipeline.make_splits(data.load_raw(small_config.data), small_config.data, 0)
  batches = pipeline.make_epoch_batcher(64, mesh)(pipeline.to_device(splits.train, mesh), 0, 0)
  results = {}
  for static_count in (False, True):
    state = jax.device_put(build.create_state(small_config, 9), parallel.replicated(mesh))
    train_chunk, _ = compiled.compile_steps(mesh, steps_per_call=small_config.steps_per_call,
                                         static_count=static_count)
    # Chunks of 4, 4 and 1 steps: two lengths, so two programs in the static form.
    state, metrics = _runner(small_config, train_chunk).train(state, batches, 0)
    results[static_count] = (jax.device_get(state.params), metrics)
    assert train_chunk._cache_size() == (2 if static_count else 1)  # pylint: disable=protected-access
  assert int(state.step) == 9
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               results[False][0], results[True][0])
  assert results[False][1]["loss"] == pytest.approx(results[True][1]["loss"], rel=1e-6)


def _runner(config, train_chunk):
  return epoch_lib.EpochRunner.from_config(config, train_chunk, steps_per_epoch=9)


def test_stop_at_the_end_of_an_epoch_saves_it_whole_and_resumes(small_config, tmp_path,
                                                                 monkeypatch):
  """Ctrl-C during an epoch's last step (or its validation) must not leave a half-done epoch."""
  real_train_epoch = epoch_lib.EpochRunner.train

  def epoch_then_ctrl_c(runner, *args, **kwargs):
    result = real_train_epoch(runner, *args, **kwargs)
    runner.stop.requested = True  # The signal arrives once the epoch's last step has run.
    return result

  workdir = str(tmp_path / "run")
  monkeypatch.setattr(epoch_lib.EpochRunner, "train", epoch_then_ctrl_c)
  with pytest.raises(TrainingInterrupted, match="Stopped at step 9"):
    train.train_and_evaluate(small_config, workdir)
  assert _steps(workdir, "latest") == [9] and _steps(workdir, "best") == [9]

  monkeypatch.setattr(epoch_lib.EpochRunner, "train", real_train_epoch)
  summary = train.train_and_evaluate(small_config, workdir)
  assert [h["epoch"] for h in summary["history"]] == [1, 2]


def test_zero_steps_per_call_is_refused_before_anything_is_written(small_config, tmp_path):
  small_config.steps_per_call = 0
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=r"^config\.steps_per_call=0 is not allowed: it must "
                     r"be at least 1; use 1 or more\.$"):
    train.train_and_evaluate(small_config, str(workdir))
  assert not workdir.exists()


def test_an_epoch_resumed_part_way_reports_metrics_over_all_its_steps(small_config, tmp_path,
                                                                      monkeypatch):
  straight = train.train_and_evaluate(small_config, str(tmp_path / "straight"))
  real_close = epoch_lib.EpochRunner._close_window  # pylint: disable=protected-access

  def stop_after_the_first_window(runner, window, last_step, *args):
    merged = real_close(runner, window, last_step, *args)
    if last_step == 4:  # Steps 1-4 of epoch 1, then Ctrl-C.
      runner.stop.requested = True
    return merged

  workdir = str(tmp_path / "split")
  monkeypatch.setattr(epoch_lib.EpochRunner, "_close_window", stop_after_the_first_window)
  with pytest.raises(TrainingInterrupted, match="Stopped at step 4"):
    train.train_and_evaluate(small_config, workdir)
  monkeypatch.setattr(epoch_lib.EpochRunner, "_close_window", real_close)
  resumed = train.train_and_evaluate(small_config, workdir)
  for key in ("train_loss", "train_accuracy", "train_grad_norm"):
    assert resumed["history"][0][key] == pytest.approx(straight["history"][0][key], rel=1e-5), key
