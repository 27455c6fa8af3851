"""Tracking: TensorBoard's HParams view for every run, and Weights & Biases offline (read back
from the run's own .wandb file, with no network)."""

import glob
import json
import os
import sys

import pytest

from jaxlearn import sweep
from jaxlearn.errors import ConfigError
from jaxlearn.runs import tracking
from jaxlearn.training import train


def _hparams_of(workdir: str):
  """(hparams, metric values) as TensorBoard's HParams plugin reads them from the event files."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=import-outside-toplevel
  from tensorboard.plugins.hparams import plugin_data_pb2  # pylint: disable=import-outside-toplevel
  accumulator = event_accumulator.EventAccumulator(
      os.path.join(workdir, "tensorboard", "hparams"), size_guidance={"scalars": 0})
  accumulator.Reload()
  content = accumulator.PluginTagToContent("hparams")
  start = plugin_data_pb2.HParamsPluginData.FromString(
      content["_hparams_/session_start_info"]).session_start_info
  values = {}
  for name, value in start.hparams.items():
    kind = value.WhichOneof("kind")
    values[name] = getattr(value, kind)
  metrics = {tag: accumulator.Scalars(tag)[-1].value for tag in accumulator.Tags()["scalars"]}
  return values, metrics


def test_every_run_writes_its_config_and_results_to_tensorboards_hparams(small_config,
                                                                         tmp_path):
  summary = train.train_and_evaluate(small_config, str(tmp_path / "run"))
  values, metrics = _hparams_of(str(tmp_path / "run"))
  assert values["optimizer.learning_rate"] == pytest.approx(small_config.optimizer.learning_rate)
  assert values["model.name"] == "lenet5" and values["batch_size"] == 64
  assert metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
  assert metrics["best_val_loss"] == pytest.approx(summary["best_val_loss"])


def _wandb_records(workdir: str) -> list:
  """Every record of the workdir's offline W&B runs, parsed from their .wandb files.

  A .wandb file is a 7-byte header (":W&B", a magic number, a version) then
  LevelDB-log records in 32 KiB blocks (4-byte checksum, 2-byte length, 1-byte
  type: full, first, middle, last), each a `wandb_internal_pb2.Record`.
  """
  from wandb.proto import wandb_internal_pb2  # pylint: disable=import-outside-toplevel
  records = []
  for path in sorted(glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "*.wandb"))):
    with open(path, "rb") as f:
      data = f.read()
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
      left = 32768 - position % 32768
      kind = data[position + 6] if left >= 7 else 0
      if kind == 0:  # The zero padding at a block's end.
        position += left
        continue
      length = int.from_bytes(data[position + 4:position + 6], "little")
      chunk = data[position + 7:position + 7 + length]
      position += 7 + length
      pending = chunk if kind in (1, 2) else pending + chunk
      if kind in (1, 4):
        records.append(wandb_internal_pb2.Record.FromString(pending))
  return records


def _items(items) -> dict:
  return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


@pytest.fixture
def offline_wandb(monkeypatch):
  pytest.importorskip("wandb")
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  monkeypatch.setenv("WANDB_DISABLE_GIT", "true")


def test_wandb_gets_the_config_every_metric_and_the_test_result(small_config, tmp_path,
                                                                offline_wandb):
  from jaxlearn.evaluation import evaluate  # pylint: disable=import-outside-toplevel
  small_config.logging.wandb_project = "jaxlearn-tests"
  workdir = str(tmp_path / "run")
  summary = train.train_and_evaluate(small_config, workdir)
  records = _wandb_records(workdir)
  [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
  assert (run.project, run.run_id, run.display_name) == ("jaxlearn-tests",
                                                         tracking.wandb_id(workdir), "run")
  config = _items(run.config.update)
  assert config["model"]["name"] == "lenet5" and config["batch_size"] == 64
  history = [_items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    written = [json.loads(line) for line in f]
  val = [w for w in written if w["split"] == "val"]
  assert [h["val/accuracy"] for h in history if "val/accuracy" in h] == pytest.approx(
      [w["accuracy"] for w in val])
  assert [h["_step"] for h in history if "val/accuracy" in h] == [w["step"] for w in val]
  assert sum("train/loss" in h for h in history) == sum(w["split"] == "train" for w in written)
  final = {}
  for r in records:
    if r.WhichOneof("record_type") == "summary":
      final.update(_items(r.summary.update))
  assert final["test_accuracy"] == pytest.approx(summary["test_accuracy"])
  assert final["test/accuracy"] == pytest.approx(summary["test_accuracy"])
  evaluate.evaluate_run(workdir, "test")  # Its figures join the same W&B run.
  records = _wandb_records(workdir)
  logged = {k: v for r in records if r.WhichOneof("record_type") == "history"
            for k, v in _items(r.history.item).items() if k.startswith("evaluation_test/")}
  assert logged["evaluation_test/confusion_matrix/_type"] == "image-file"
  assert logged["evaluation_test/mistakes/_type"] == "image-file"
  assert {r.run.run_id for r in records if r.WhichOneof("record_type") == "run"} == {
      tracking.wandb_id(workdir)}


def test_a_sweeps_trials_are_one_wandb_group(small_config, tmp_path, offline_wandb):
  small_config.logging.wandb_project = "jaxlearn-tests"
  small_config.num_epochs = 1
  rows = sweep.run(small_config, {"optimizer.learning_rate": [0.001, 0.004]},
                   workdir=str(tmp_path / "lr_sweep"))
  for row in rows:
    runs = [r.run for r in _wandb_records(str(tmp_path / "lr_sweep" / row["trial"]))
            if r.WhichOneof("record_type") == "run"]
    assert [(r.run_group, r.display_name) for r in runs] == [("lr_sweep", row["trial"])]


def test_wandb_asked_for_but_not_installed_is_refused_before_training(small_config, tmp_path,
                                                                      monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)
  small_config.logging.wandb_project = "p"
  with pytest.raises(ConfigError, match=r"config.logging.wandb_project='p' needs Weights & "
                                        r"Biases: pip install 'jaxlearn\[wandb\]'"):
    train.train_and_evaluate(small_config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
