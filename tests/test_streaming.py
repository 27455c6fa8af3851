"""Image folders and the Grain pipeline: loading, streaming, resuming on the same batches."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from configs import mnist_lenet
from jaxlearn.config import default_config
from jaxlearn.data import datasets, folders, pipeline
from jaxlearn.errors import ConfigError, DataError, TrainingInterrupted
from jaxlearn.runs import checkpoint
from jaxlearn.training import epoch as epoch_lib, train


def make_image_folder(root, per_class=40, classes=10, size=(28, 28), seed=0, mode="L") -> str:
  """ROOT/<class>/<i>.png: each class a faint bar at its own row on noise (learnable)."""
  rng = np.random.default_rng(seed)
  for label in range(classes):
    os.makedirs(os.path.join(root, f"class_{label}"), exist_ok=True)
    for i in range(per_class):
      pixels = rng.integers(0, 100, size).astype(np.uint8)
      pixels[2 + 2 * label:4 + 2 * label, 4:24] += 80
      image = Image.fromarray(pixels)
      (image.convert("RGB") if mode == "RGB" else image).save(
          os.path.join(root, f"class_{label}", f"{i}.png"))
  return str(root)


def _folder_config(path, **fields):
  config = mnist_lenet.get_config()
  config.data.name, config.data.path = "image_folder", str(path)
  config.progress_bar, config.compilation_cache_dir = False, ""
  config.batch_size, config.eval_batch_size, config.num_epochs = 32, 40, 2
  config.log_every_steps, config.steps_per_call = 3, 2
  for key, value in fields.items():
    target = config
    *parents, leaf = key.split(".")
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> str:
  return make_image_folder(tmp_path_factory.mktemp("folder") / "digits")


def test_an_image_folder_reads_classes_from_subfolders(image_folder):
  data_config = _folder_config(image_folder).data
  raw = datasets.load_raw(data_config)
  assert raw.class_names == tuple(f"class_{i}" for i in range(10)) and raw.test is None
  assert isinstance(raw.train[0], folders.ImageFiles) and raw.train[0].shape == (400, 28, 28, 1)
  assert raw.train[1].tolist() == [label for label in range(10) for _ in range(40)]
  decoded = np.asarray(raw.train[0][:3])
  expected = np.asarray(Image.open(os.path.join(image_folder, "class_0", "0.png")))
  np.testing.assert_array_equal(decoded[0, ..., 0], expected)  # Files are in sorted order.
  splits = pipeline.make_splits(raw, data_config, 0)
  assert [len(s["targets"]) for s in splits[:3]] == [280, 80, 40]  # 7:2:1
  assert splits.preprocessing["class_names"][3] == "class_3"


def test_train_and_test_subfolders_and_resizing(tmp_path):
  make_image_folder(tmp_path / "f" / "train", per_class=6, classes=3, size=(30, 20), mode="RGB")
  make_image_folder(tmp_path / "f" / "test", per_class=2, classes=3, size=(30, 20), seed=1,
                    mode="RGB")
  data_config = _folder_config(tmp_path / "f").data
  raw = datasets.load_raw(data_config)
  assert raw.train[0].shape == (18, 30, 20, 3) and raw.test[0].shape == (6, 30, 20, 3)
  data_config.image_size, data_config.channels = (16, 16), 1
  raw = datasets.load_raw(data_config)
  assert np.asarray(raw.test[0]).shape == (6, 16, 16, 1)


def test_image_folder_mistakes_are_named(tmp_path):
  make_image_folder(tmp_path / "f", per_class=2, classes=2)
  Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "f" / "class_1" / "odd.png")
  raw = datasets.load_raw(_folder_config(tmp_path / "f").data)
  with pytest.raises(DataError, match=r"odd.png is 10x10 but the folder's first image is 28x28; "
                                      r"set --config.data.image_size='\(28, 28\)'"):
    np.asarray(raw.train[0])
  (tmp_path / "f" / "class_1" / "broken.png").write_bytes(b"not a png")
  raw = datasets.load_raw(_folder_config(tmp_path / "f").data)
  with pytest.raises(DataError, match="broken.png cannot be read as an image"):
    np.asarray(raw.train[0])
  with pytest.raises(DataError, match="holds 0 class subfolder"):
    datasets.load_raw(_folder_config(tmp_path / "f" / "class_0").data)
  with pytest.raises(ConfigError, match="reads config.data.path; set it"):
    datasets.load_raw(_folder_config("").data)


def test_streamed_training_matches_the_memory_pipeline(image_folder, tmp_path):
  """One process: each batch holds the same examples either way (Grain decodes them in
  worker processes), so the runs agree to float rounding."""
  memory = train.train_and_evaluate(_folder_config(image_folder), str(tmp_path / "memory"))
  streamed = train.train_and_evaluate(_folder_config(image_folder, **{"data.pipeline": "grain"}),
                                      str(tmp_path / "grain"))
  a, b = (checkpoint.load_best_arrays(str(tmp_path / w))["params"] for w in ("memory", "grain"))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5), a, b)
  assert streamed["test_accuracy"] == pytest.approx(memory["test_accuracy"], abs=1e-6)
  assert streamed["test_accuracy"] > 0.5  # 10 classes: it learnt.
  lines = open(tmp_path / "grain" / "metrics.jsonl").read()
  assert '"input_wait"' in lines and '"input_wait"' not in open(
      tmp_path / "memory" / "metrics.jsonl").read()


def test_an_interrupted_streamed_run_resumes_on_the_same_batches(image_folder, tmp_path,
                                                                 monkeypatch):
  config = lambda: _folder_config(image_folder, **{"data.pipeline": "grain"})
  straight = train.train_and_evaluate(config(), str(tmp_path / "straight"))
  real_close = epoch_lib.EpochRunner._close_window  # pylint: disable=protected-access

  def stop_mid_epoch_two(runner, window, last_step, *args):
    merged = real_close(runner, window, last_step, *args)
    if last_step == 11:  # Epoch 2 is steps 9-16 (280 examples, batches of 32), in windows of 3.
      runner.stop.requested = True
    return merged

  monkeypatch.setattr(epoch_lib.EpochRunner, "_close_window", stop_mid_epoch_two)
  with pytest.raises(TrainingInterrupted, match="Stopped at step 11"):
    train.train_and_evaluate(config(), str(tmp_path / "split"))
  monkeypatch.setattr(epoch_lib.EpochRunner, "_close_window", real_close)
  resumed = train.train_and_evaluate(config(), str(tmp_path / "split"))
  a, b = (checkpoint.load_best_arrays(str(tmp_path / w)) for w in ("straight", "split"))
  jax.tree.map(np.testing.assert_array_equal, a["params"], b["params"])  # Bit for bit.
  for key in ("test_accuracy", "test_loss"):
    assert resumed[key] == straight[key]
  for s, r in zip(straight["history"], resumed["history"]):
    assert {k: v for k, v in s.items() if k != "seconds"} == {
        k: v for k, v in r.items() if k != "seconds"}


def test_the_pipeline_must_be_memory_or_grain():
  config = default_config()
  config.data.pipeline = "tfdata"
  from jaxlearn import config as config_lib  # pylint: disable=import-outside-toplevel
  with pytest.raises(ConfigError, match=r"config.data.pipeline='tfdata' is not allowed: it "
                                        r"must be one of \['memory', 'grain'\]"):
    config_lib.validate(config)


def _tree_memory_bytes(pid: int) -> int:
  """Memory of a process and all its descendants (Grain's workers): the sum of their PSS
  (resident memory, pages shared between them counted once), from /proc."""
  children = {}
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
      except OSError:
        continue
  total, todo = 0, [pid]
  while todo:
    current = todo.pop()
    todo += children.get(current, [])
    try:
      with open(f"/proc/{current}/smaps_rollup") as f:
        total += next(int(l.split()[1]) for l in f if l.startswith("Pss:")) * 1024
    except (OSError, StopIteration):
      continue
  return total


@pytest.mark.slow
def test_a_folder_bigger_than_the_memory_limit_streams_within_it(tmp_path):
  """8,000 RGB 256x256 JPEGs: 6.3 GB as the float32 arrays the memory pipeline would hold.
  Streamed, the run with its two workers stays under a 3.5 GB limit (measured: 2.8 GB)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  from tests.conftest import PROJECT_ROOT  # pylint: disable=import-outside-toplevel
  limit = 3.5e9
  rng = np.random.default_rng(0)
  for label in range(2):
    os.makedirs(tmp_path / "big" / str(label))
    for i in range(4000):
      pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
      pixels[:, :, label] //= 2  # Class 1 is less green, class 0 less red.
      Image.fromarray(pixels).save(tmp_path / "big" / str(label) / f"{i}.jpg", quality=90)
  as_float32 = 8000 * 256 * 256 * 3 * 4
  assert as_float32 > limit
  command = [sys.executable, "-m", "jaxlearn.main", "--config=configs/mnist_mlp.py",
             f"--workdir={tmp_path / 'run'}", "--config.data.name=image_folder",
             f"--config.data.path={tmp_path / 'big'}", "--config.data.pipeline=grain",
             "--config.data.split_ratios=0.96:0.02:0.02", "--config.model.hidden=(16,)",
             "--config.batch_size=32", "--config.eval_batch_size=32", "--config.num_epochs=1",
             "--config.progress_bar=False", "--config.compilation_cache_dir="]
  process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  peak = 0
  while process.poll() is None:
    peak = max(peak, _tree_memory_bytes(process.pid))
    time.sleep(0.2)
  out, err = process.communicate()
  assert process.returncode == 0, err[-3000:]
  assert "Test, best checkpoint" in out
  print(f"peak memory {peak / 1e9:.2f} GB")
  assert 0 < peak < limit, f"peak memory {peak / 1e9:.2f} GB"
