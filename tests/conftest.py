"""Shared fixtures: the real data root, tiny generated IDX datasets, and a base config."""

import gzip
import os
import pathlib

import numpy as np
import pytest

from configs import mnist_lenet

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent


def real_data_dir() -> str:
  """$JAXLEARN_DATA_DIR, else the shared data folder beside the project checkout."""
  return os.environ.get("JAXLEARN_DATA_DIR") or str(PROJECT_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def mnist_root() -> str:
  root = real_data_dir()
  if not os.path.exists(os.path.join(root, "mnist", "train-images-idx3-ubyte.gz")):
    pytest.skip(f"real MNIST not found under {root}; set JAXLEARN_DATA_DIR")
  return root


def write_idx(path, array: np.ndarray, magic: int) -> None:
  """Writes `array` (uint8) as a gzip-compressed IDX file."""
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def make_fake_mnist(root, num_train=640, num_test=160, seed=0) -> str:
  """A learnable MNIST-shaped dataset: each class is a bright bar at its own row."""
  rng = np.random.default_rng(seed)
  directory = pathlib.Path(root) / "mnist"
  directory.mkdir(parents=True, exist_ok=True)
  for prefix, n in (("train", num_train), ("t10k", num_test)):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
      images[i, 2 + 2 * label:4 + 2 * label, 4:24] = 255
    write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
  return str(root)


@pytest.fixture
def fake_root(tmp_path) -> str:
  return make_fake_mnist(tmp_path / "data")


@pytest.fixture
def small_config(fake_root):
  """The LeNet-5 experiment shrunk to the fake dataset: seconds per run."""
  config = mnist_lenet.get_config()
  config.data.dir = fake_root
  config.batch_size = 64
  config.eval_batch_size = 80
  config.num_epochs = 2
  config.log_every_steps = 4
  config.progress_bar = False
  return config
