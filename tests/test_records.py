"""ArrayRecord datasets: written from any image dataset, read back exactly, streamed by Grain."""

import json
import os
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxlearn.config import default_config
from jaxlearn.data import array_record as records, datasets, pipeline
from jaxlearn.data.sources import RawData
from jaxlearn.errors import ConfigError, DataError, MissingFilesError
from jaxlearn.runs import checkpoint
from jaxlearn.training import train
from tests.conftest import PROJECT_ROOT


def _raw(num_train=300, num_test=50, shape=(6, 5, 3), seed=0) -> RawData:
  rng = np.random.default_rng(seed)
  images = lambda n: rng.integers(0, 256, (n, *shape)).astype(np.uint8)
  labels = lambda n: rng.integers(0, 4, n).astype(np.int32)
  return RawData("image", (images(num_train), labels(num_train)),
                 (images(num_test), labels(num_test)), class_names=("a", "b", "c", "d"))


def _records_config(small_config, path):
  small_config.data.name, small_config.data.path = "array_record", str(path)
  return small_config


def test_records_read_back_exactly_what_was_written(tmp_path, small_config):
  raw = _raw()
  records.write(raw, str(tmp_path / "out" / "set"))
  assert os.listdir(tmp_path / "out") == ["set"]  # No temporary folder left beside it.
  loaded = datasets.load_raw(_records_config(small_config, tmp_path / "out" / "set").data)
  assert loaded.class_names == ("a", "b", "c", "d") and loaded.kind == "image"
  for (images, labels), (want_images, want_labels) in zip((loaded.train, loaded.test),
                                                          (raw.train, raw.test)):
    assert isinstance(images, records.RecordImages) and images.shape == want_images.shape
    np.testing.assert_array_equal(np.asarray(images), want_images)
    np.testing.assert_array_equal(labels, want_labels)
  train_images = loaded.train[0]
  np.testing.assert_array_equal(train_images[7], raw.train[0][7])
  rows = np.array([299, 3, 150])
  np.testing.assert_array_equal(np.asarray(train_images[rows]), raw.train[0][rows])
  # Grain's workers unpickle the images and open the files themselves.
  np.testing.assert_array_equal(np.asarray(pickle.loads(pickle.dumps(train_images[rows]))),
                                raw.train[0][rows])


def test_pooled_splits_cut_records_as_they_cut_arrays(tmp_path, small_config):
  """split_ratios pools train and test: records join their indices, not their pixels."""
  raw = _raw()
  records.write(raw, str(tmp_path / "set"))
  config = _records_config(small_config, tmp_path / "set").data
  config.split_ratios = "6:3:1"
  from_records = pipeline.split_raw(datasets.load_raw(config), config, seed=3)
  from_arrays = pipeline.split_raw(raw, config, seed=3)
  for (images, labels), (want_images, want_labels) in zip(from_records, from_arrays):
    np.testing.assert_array_equal(np.asarray(images), want_images)
    np.testing.assert_array_equal(labels, want_labels)


@pytest.mark.slow  # Two runs, one a subprocess: 20 s on 2 cores.
def test_streaming_from_records_trains_as_from_the_dataset_they_came_from(small_config,
                                                                          tmp_path):
  """The CLI writes the fake MNIST as records; a streamed run on them, as a user starts it,
  ends with the parameters of a streamed run on the IDX files, bit for bit."""
  small_config.data.pipeline = "grain"
  env = {**os.environ, "JAXLEARN_DATA_DIR": small_config.data.dir}
  written = subprocess.run(
      [sys.executable, "-m", "jaxlearn.data.records", "--config=configs/mnist_lenet.py",
       f"--out={tmp_path / 'records'}"], cwd=PROJECT_ROOT, env=env, capture_output=True,
      text=True, check=True)
  assert (f"Wrote mnist (640 train, 160 test images of (28, 28, 1)) to {tmp_path / 'records'}; "
          "train on it with --config.data.name=array_record") in written.stdout
  train.train_and_evaluate(small_config, str(tmp_path / "idx"))
  run = subprocess.run(
      [sys.executable, "-m", "jaxlearn.main", "--config=configs/mnist_lenet.py",
       f"--workdir={tmp_path / 'from_records'}", "--config.data.name=array_record",
       f"--config.data.path={tmp_path / 'records'}", "--config.data.pipeline=grain",
       "--config.batch_size=64", "--config.eval_batch_size=80", "--config.num_epochs=2",
       "--config.log_every_steps=4", "--config.progress_bar=False",
       "--config.compilation_cache_dir="], cwd=PROJECT_ROOT, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  a, b = (checkpoint.load_best_arrays(str(tmp_path / w))["params"] for w in ("idx",
                                                                             "from_records"))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  summaries = [json.load(open(tmp_path / w / "summary.json")) for w in ("idx", "from_records")]
  assert summaries[0]["test_accuracy"] == summaries[1]["test_accuracy"] > 0.3


def test_record_mistakes_are_named(tmp_path, small_config):
  raw = _raw()
  out = str(tmp_path / "set")
  records.write(raw, out)
  with pytest.raises(ConfigError, match="already exists; pass a new folder"):
    records.write(raw, out)
  with pytest.raises(ConfigError, match="Only image datasets are written as records"):
    records.write(raw._replace(kind="text"), str(tmp_path / "text"))
  config = lambda path: _records_config(small_config, path).data
  with pytest.raises(MissingFilesError, match="dataset.json not found; config.data.path must be"):
    datasets.load_raw(config(tmp_path))
  with pytest.raises(ConfigError, match="reads config.data.path; set it"):
    datasets.load_raw(config(""))
  # A test file cut short: fewer records than labels.
  short = str(tmp_path / "short")
  records.write(raw._replace(test=(raw.test[0][:20], raw.test[1][:20])), short)
  os.replace(os.path.join(short, "test.array_record"), os.path.join(out, "test.array_record"))
  with pytest.raises(DataError, match=r"test.array_record holds 20 records but .* lists 50 "
                                      "labels for it; the folder is incomplete or corrupt"):
    datasets.load_raw(config(out))
  with open(os.path.join(out, "train.array_record"), "wb") as f:
    f.write(b"not an array record file" * 10)
  with pytest.raises(DataError, match="train.array_record cannot be read as an ArrayRecord file"):
    datasets.load_raw(config(out))
  with open(os.path.join(out, "dataset.json"), "w") as f:
    f.write("{")
  with pytest.raises(DataError, match="dataset.json is not a dataset index written by jaxlearn"):
    datasets.load_raw(config(out))
  # Records of another image size.
  other = str(tmp_path / "other")
  records.write(_raw(shape=(4, 4, 1)), other)
  index = json.load(open(os.path.join(other, "dataset.json")))
  index["image_shape"] = [6, 5, 3]
  json.dump(index, open(os.path.join(other, "dataset.json"), "w"))
  images = datasets.load_raw(config(other)).train[0]
  with pytest.raises(DataError, match=r"Record 0 of .* holds 16 bytes, not the 90 of a "
                                      r"\(6, 5, 3\) uint8 image"):
    np.asarray(images[:2])


class _StopsWhenRead:
  """Test images whose reading is interrupted (as by Ctrl-C) after the train file is written."""
  shape = (50, 6, 5, 3)

  def __getitem__(self, index):
    raise KeyboardInterrupt


def test_an_interrupted_write_leaves_no_dataset(tmp_path):
  raw = _raw()
  with pytest.raises(KeyboardInterrupt):
    records.write(raw._replace(test=(_StopsWhenRead(), raw.test[1])), str(tmp_path / "set"))
  assert os.listdir(tmp_path) == []


def test_subsets_share_the_opened_files(tmp_path, monkeypatch):
  """Opening an ArrayRecord file costs more than reading a batch: a batch taken from the
  split (as every streamed step does) reads through the files the split opened."""
  records.write(_raw(), str(tmp_path / "set"))
  opened = []
  real_open = records.RecordImages._open_part
  monkeypatch.setattr(records.RecordImages, "_open_part",
                      lambda self, part: opened.append(part) or real_open(self, part))
  config = default_config().data
  config.name, config.path = "array_record", str(tmp_path / "set")
  images = datasets.load_raw(config).train[0]
  for start in range(0, 300, 50):
    np.asarray(images[np.arange(start, start + 50)])
  images[3]
  assert opened == [str(tmp_path / "set" / "train.array_record")]


@pytest.mark.parametrize("args, message", [
    (["--config=configs/no_such.py"], "jaxlearn: error: The config file 'configs/no_such.py' "
                                      "(--config) does not exist; pass one of configs/*.py"),
    (["--config=configs/mnist_lenet.py", "--config.data.nme=mnist"],
     "jaxlearn: error: Unknown config key 'config.data.nme' in '--config.data.nme=mnist'. "
     "config.data has: "),
])
def test_the_records_command_names_a_bad_config_in_one_message(tmp_path, args, message):
  result = subprocess.run([sys.executable, "-m", "jaxlearn.data.records", *args,
                           f"--out={tmp_path / 'records'}"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and message in result.stderr, result.stderr
  assert "Traceback" not in result.stderr and not (tmp_path / "records").exists()
