"""Where raw datasets come from: local files under a data root, or TFDS.

Every source returns the same thing, `{"train": (images, labels), "test": ...}`
with uint8 images shaped (N, H, W, C), so the pipeline never cares which one ran.
"""

import os

import numpy as np

from jaxlearn.data import idx
from jaxlearn.errors import ConfigError, DataError

DATA_DIR_ENV = "JAXLEARN_DATA_DIR"

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# Datasets readable from local IDX files, with where their files can be found.
IDX_DATASETS = {
    "mnist": "the MNIST distribution (e.g. https://storage.googleapis.com/cvdf-datasets/mnist/)",
    "fashion_mnist": ("the Fashion-MNIST distribution (github.com/zalandoresearch/fashion-mnist, "
                      "data/fashion/), or on Debian `apt-get install dataset-fashion-mnist`, "
                      "which puts them in /usr/share/datasets/fashion-mnist"),
}

SOURCES = ("auto", "local", "tfds")


def resolve_data_dir(data_config) -> str:
  """The local data root: `config.data.dir`, else $JAXLEARN_DATA_DIR, else ''."""
  return data_config.dir or os.environ.get(DATA_DIR_ENV, "")


def load_raw(data_config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Loads the train and test splits of `data_config.name` as uint8 arrays."""
  name = data_config.name
  if name not in IDX_DATASETS:
    raise ConfigError(f"Unknown dataset {name!r} in config.data.name; "
                      f"choose one of {sorted(IDX_DATASETS)}.")
  if data_config.source not in SOURCES:
    raise ConfigError(f"Unknown config.data.source {data_config.source!r}; "
                      f"choose one of {SOURCES}.")
  root = resolve_data_dir(data_config)
  if data_config.source == "local" or (data_config.source == "auto" and root):
    if not root:
      raise DataError(_how_to_get(name, "config.data.source='local' but no data root is set"))
    return load_idx_dir(os.path.join(root, name), name)
  return load_tfds(data_config, allow_missing=data_config.source == "auto")


def load_idx_dir(directory: str, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads the four IDX files of an MNIST-style dataset from `directory`."""
  paths = {split: [os.path.join(directory, f) for f in files] for split, files in IDX_FILES.items()}
  missing = [p for ps in paths.values() for p in ps if not _exists(p)]
  if missing:
    raise DataError(_how_to_get(
        name, f"{', '.join(os.path.basename(p) for p in missing)} not found in {directory}"))
  raw = {}
  for split, (images_path, labels_path) in paths.items():
    images = idx.read_idx(images_path, idx.IMAGES_MAGIC)
    labels = idx.read_idx(labels_path, idx.LABELS_MAGIC)
    if images.ndim != 3 or len(images) != len(labels):
      raise DataError(f"{images_path} holds {images.shape[0]} images of shape {images.shape[1:]}"
                      f" and {labels_path} {len(labels)} labels; they must pair one to one as"
                      " (N, H, W) images and N labels. Download both files again.")
    raw[split] = (images[..., None], labels.astype(np.int32))
  return raw


def load_tfds(data_config, allow_missing: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Loads a dataset with TensorFlow Datasets, downloading it if TFDS can."""
  name = data_config.name
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    reason = ("no data root is set (config.data.dir / $JAXLEARN_DATA_DIR) and "
              "tensorflow-datasets is not installed" if allow_missing else
              "config.data.source='tfds' but tensorflow-datasets is not installed")
    raise DataError(_how_to_get(name, reason)) from e
  try:
    splits = tfds.load(name, split=["train", "test"], batch_size=-1, as_supervised=True,
                       data_dir=data_config.tfds_data_dir or None)
  except Exception as e:  # TFDS raises many kinds when offline or unprepared.
    raise DataError(_how_to_get(name, f"TFDS could not load or download it ({e})")) from e
  return {split: (np.asarray(x, np.uint8), np.asarray(y, np.int32))
          for split, (x, y) in zip(("train", "test"), tfds.as_numpy(splits))}


def _exists(path: str) -> bool:
  return os.path.exists(path) or (path.endswith(".gz") and os.path.exists(path[:-3]))


def _how_to_get(name: str, reason: str) -> str:
  files = ", ".join(f for pair in IDX_FILES.values() for f in pair)
  return (f"No {name} data: {reason}. Either put the four IDX files ({files}) from "
          f"{IDX_DATASETS[name]} in ROOT/{name}/ and pass --config.data.dir=ROOT "
          f"(or set {DATA_DIR_ENV}=ROOT), or run `pip install 'jaxlearn[tfds]'` on a machine "
          "with internet access so TensorFlow Datasets can download and prepare it.")
