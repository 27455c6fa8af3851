"""IDX reading, splitting and normalisation; bad data files give clear errors."""

import gzip
import os

import ml_collections
import numpy as np
import pytest

from tests.conftest import write_idx
from jaxlearn.config import default_config
from jaxlearn.data import datasets, download, idx, images, pipeline, sources
from jaxlearn.errors import ConfigError, DataError


def test_read_idx_round_trips_array(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (7, 28, 28)).astype(np.uint8)
  write_idx(tmp_path / "x.gz", images, idx.IMAGES_MAGIC)
  np.testing.assert_array_equal(idx.read_idx(str(tmp_path / "x.gz"), idx.IMAGES_MAGIC), images)


def test_real_mnist_shapes_and_label_counts(mnist_root):
  raw = images.load_idx_dir(os.path.join(mnist_root, "mnist"), "mnist")
  assert raw.train[0].shape == (60000, 28, 28, 1)
  assert raw.test[0].shape == (10000, 28, 28, 1)
  # Published MNIST class counts: 5923 zeros in train, 980 zeros in test.
  assert np.sum(raw.train[1] == 0) == 5923
  assert np.sum(raw.test[1] == 0) == 980


def test_positive_class_makes_a_one_vs_rest_binary_dataset(mnist_root):
  config = default_config()
  config.data.dir, config.data.positive_class = mnist_root, 0
  raw = datasets.load_raw(config.data)
  assert set(np.unique(raw.train[1])) == {0, 1}
  assert np.sum(raw.train[1]) == 5923 and np.sum(raw.test[1]) == 980  # MNIST's zeros.
  assert raw.class_names == ("not 0", "0")
  config.data.positive_class = 10
  with pytest.raises(ConfigError, match=r"config.data.positive_class=10, but mnist's labels "
                                        r"run 0..9; use one of its class ids, or -1 \(off\)."):
    datasets.load_raw(config.data)


def test_a_label_outside_the_datasets_classes_is_named_with_file_and_index(fake_root):
  path = os.path.join(fake_root, "mnist", "train-labels-idx1-ubyte.gz")
  labels = idx.read_idx(path, idx.LABELS_MAGIC).copy()
  labels[7] = 12
  write_idx(path, labels, idx.LABELS_MAGIC)
  with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz has label 12 at index 7 \(1 "
                     r"such labels\); this dataset's labels are 0-9"):
    images.load_idx_dir(os.path.join(fake_root, "mnist"), "mnist")


def test_truncated_gzip_is_reported(fake_root):
  path = os.path.join(fake_root, "mnist", "train-images-idx3-ubyte.gz")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is not a readable gzip file"
                     r".*truncated or corrupt: download it again"):
    images.load_idx_dir(os.path.join(fake_root, "mnist"), "mnist")


def test_not_gzip_at_all_is_reported(fake_root):
  path = os.path.join(fake_root, "mnist", "t10k-labels-idx1-ubyte.gz")
  with open(path, "wb") as f:
    f.write(b"<html>404 not found</html>")
  with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz is not a readable gzip file"):
    images.load_idx_dir(os.path.join(fake_root, "mnist"), "mnist")


def test_wrong_magic_number_is_reported(fake_root):
  # A labels file where the images file should be.
  directory = os.path.join(fake_root, "mnist")
  os.replace(os.path.join(directory, "train-labels-idx1-ubyte.gz"),
             os.path.join(directory, "train-images-idx3-ubyte.gz"))
  write_idx(os.path.join(directory, "train-labels-idx1-ubyte.gz"), np.zeros(640, np.uint8), 2049)
  with pytest.raises(DataError, match="has IDX magic number 2049, but an images file starts "
                     "with 2051"):
    images.load_idx_dir(directory, "mnist")


def test_payload_shorter_than_header_says_is_reported(tmp_path):
  path = tmp_path / "short.gz"
  with gzip.open(path, "wb") as f:
    f.write((2049).to_bytes(4, "big") + (100).to_bytes(4, "big") + bytes(60))
  with pytest.raises(DataError, match="holds 68 bytes but its IDX header \\(100,\\) needs 108"):
    idx.read_idx(str(path), idx.LABELS_MAGIC)


def test_missing_files_are_named_with_how_to_get_them(tmp_path):
  (tmp_path / "mnist").mkdir()
  config = default_config().data
  config.dir, config.source = str(tmp_path), "local"  # local: never downloads
  with pytest.raises(DataError) as error:
    datasets.load_raw(config)
  message = str(error.value)
  assert "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in message
  assert f"not found in {tmp_path / 'mnist'}" in message
  assert "--config.data.dir=ROOT" in message and "jaxlearn[tfds]" in message
  assert "--config.data.mirror=URL (or JAXLEARN_DATA_MIRROR)" in message


def test_missing_files_offline_say_the_download_failed_and_how_to_get_them(tmp_path):
  (tmp_path / "mnist").mkdir()
  config = default_config().data
  config.dir = str(tmp_path)  # source auto: downloads, here from the tests' closed port
  with pytest.raises(DataError, match=(
      rf"No mnist data: its files are not in {tmp_path / 'mnist'}, and downloading "
      r"http://127.0.0.1:9/mnist/train-images-idx3-ubyte.gz failed 3 times, last with "
      r"URLError: .*\. Put the four IDX files")):
    datasets.load_raw(config)
  assert os.listdir(tmp_path / "mnist") == []


def test_no_data_root_downloads_into_the_cache(monkeypatch):
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  cache = download.default_root()
  assert cache == os.path.join(os.environ["XDG_CACHE_HOME"], "jaxlearn", "data")
  with pytest.raises(DataError, match=rf"No mnist data: its files are not in "
                                      rf"{os.path.join(cache, 'mnist')}, and downloading"):
    datasets.load_raw(default_config().data)


def test_env_var_selects_local_root(monkeypatch, fake_root):
  monkeypatch.setenv(sources.DATA_DIR_ENV, fake_root)
  raw = datasets.load_raw(default_config().data)
  assert raw.train[0].shape == (640, 28, 28, 1)


def _raw(n_train=1000, n_test=200):
  """Example i has label i and pixels i % 256, so splits can be traced back to the source."""
  def split(n, offset):
    ids = np.arange(offset, offset + n)
    return (np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None, None], (n, 2, 2, 1)),
            ids.astype(np.int32))
  return sources.RawData("image", split(n_train, 0), split(n_test, n_train))


def test_validation_fraction_is_held_out_without_overlap():
  config = default_config().data
  config.mean, config.std = (0.5,), (0.25,)
  splits = pipeline.make_splits(_raw(), config, seed=0)
  assert len(splits.val["targets"]) == 100 and len(splits.train["targets"]) == 900
  assert not set(splits.val["targets"]) & set(splits.train["targets"])
  np.testing.assert_array_equal(splits.test["targets"], np.arange(1000, 1200))


def test_split_is_deterministic_in_the_seed():
  config = default_config().data
  a, b = (pipeline.make_splits(_raw(), config, seed=s) for s in (0, 0))
  c = pipeline.make_splits(_raw(), config, seed=1)
  np.testing.assert_array_equal(a.val["targets"], b.val["targets"])
  assert not np.array_equal(a.val["targets"], c.val["targets"])


def test_7_2_1_ratios_pool_and_split_everything():
  config = default_config().data
  config.split_ratios = "7:2:1"
  splits = pipeline.make_splits(_raw(), config, seed=0)
  sizes = [len(s["targets"]) for s in splits[:3]]
  assert sizes == [840, 240, 120]
  assert sorted(np.concatenate([s["targets"] for s in splits[:3]])) == list(range(1200))


def test_bad_ratio_string_is_reported():
  config = default_config().data
  config.split_ratios = "70/20/10"
  with pytest.raises(ConfigError, match="must be 'train:val:test', e.g. '7:2:1'"):
    pipeline.make_splits(_raw(), config, seed=0)


def test_normalisation_matches_numpy():
  pixels = np.array([[[[0]], [[255]]]], np.uint8)
  out = images.normalise_images(pixels, mean=(0.1307,), std=(0.3081,))
  np.testing.assert_allclose(out.ravel(), [(0 - 0.1307) / 0.3081, (1 - 0.1307) / 0.3081],
                             rtol=1e-6)


def test_normalisation_table_gives_the_formulas_float32_values():
  pixels = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
  mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
  expected = (pixels.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(std)
  np.testing.assert_array_equal(images.normalise_images(pixels, mean, std), expected)
  np.testing.assert_array_equal(images.normalise_images(pixels[..., :1], (0.5,), (0.2,)),
                                (pixels[..., :1].astype(np.float32) / 255.0 - 0.5) / 0.2)
  # Pixels of another type take the formula itself.
  np.testing.assert_array_equal(images.normalise_images(pixels.astype(np.int32), mean, std),
                                expected)


def test_real_mnist_normalised_train_split_is_standardised(mnist_root):
  config = default_config().data
  config.dir = mnist_root
  splits = pipeline.make_splits(datasets.load_raw(config), config, seed=0)
  x = splits.train["inputs"]
  assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1.0) < 0.01


def test_epoch_batches_are_a_permutation_and_differ_by_epoch():
  from jaxlearn.core import parallel
  mesh = parallel.make_mesh()
  arrays = {"targets": np.arange(100, dtype=np.int32)}
  batcher = pipeline.make_epoch_batcher(32, mesh)
  targets = lambda epoch: np.stack([np.asarray(epoch.batch(i)["targets"]) for i in range(3)])
  e0 = targets(batcher(arrays, 0, 0))
  e1 = targets(batcher(arrays, 0, 1))
  assert e0.shape == (3, 32) and len(set(e0.ravel())) == 96
  assert not np.array_equal(e0, e1)
  again = targets(batcher(arrays, 0, 0))
  np.testing.assert_array_equal(e0, again)


def test_eval_batches_pad_with_zero_mask():
  from jaxlearn.core import parallel
  split = {"inputs": np.ones((10, 2), np.float32), "targets": np.arange(10, dtype=np.int32)}
  batches = pipeline.make_eval_batches(split, 4, parallel.make_mesh())
  assert batches["weights"].shape == (3, 4)
  np.testing.assert_array_equal(np.asarray(batches["weights"]).ravel(), [1] * 10 + [0, 0])


def test_unknown_dataset_name_is_reported():
  config = ml_collections.ConfigDict(default_config().data.to_dict())
  config.name = "mnsit"
  with pytest.raises(ConfigError, match="Unknown dataset 'mnsit'.*'fashion_mnist', "
                                        "'image_folder', 'imdb', 'mnist'"):
    datasets.load_raw(config)


class _FakeTfds:
  """Stands in for tensorflow_datasets: `load` returns arrays or raises like offline TFDS."""

  def __init__(self, error=None):
    self.error, self.calls = error, []

  def load(self, name, **kwargs):
    self.calls.append((name, kwargs))
    if self.error:
      raise self.error
    make = lambda n: [{"image": np.zeros((n, 28, 28, 1), np.uint8), "label": np.arange(n) % 10}]
    return [make(6), make(4)], _FakeInfo()

  @staticmethod
  def as_numpy(tree):
    return tree


class _FakeInfo:
  features = {"label": type("ClassLabel", (), {"names": [str(i) for i in range(10)]})()}


def test_tfds_source_returns_the_same_arrays_as_local_files(monkeypatch):
  fake = _FakeTfds()
  monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", fake)
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  config = default_config().data
  config.source = "tfds"
  raw = datasets.load_raw(config)
  assert raw.train[0].shape == (6, 28, 28, 1) and raw.train[0].dtype == np.uint8
  assert raw.test[1].dtype == np.int32
  assert fake.calls[0][0] == "mnist" and fake.calls[0][1]["split"] == ["train", "test"]


def test_tfds_failing_offline_says_how_to_get_the_files(monkeypatch):
  fake = _FakeTfds(error=ConnectionError("Failed to resolve host"))
  monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", fake)
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  config = default_config().data
  config.source = "tfds"
  with pytest.raises(DataError, match=r"No mnist data: TFDS could not load or download it "
                     r"\(Failed to resolve host\)\. Put the four IDX files"):
    datasets.load_raw(config)
