"""Image datasets: MNIST-style IDX files, CIFAR-10's binary batches, or TFDS.

Each loader returns uint8 images shaped (N, H, W, C) with int32 labels.
"""

import functools
import os

import numpy as np

from jaxlearn.data import idx
from jaxlearn.data.sources import (RawData, elsewhere, load_tfds, local_or_tfds,
                                   tfds_image_source)
from jaxlearn.errors import ConfigError, DataError, MissingFilesError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# Where each IDX dataset's files can be downloaded, and system folders holding them.
IDX_ORIGINS = {
    "mnist": "the MNIST distribution (e.g. https://storage.googleapis.com/cvdf-datasets/mnist/)",
    "fashion_mnist": ("the Fashion-MNIST distribution (github.com/zalandoresearch/fashion-mnist, "
                      "data/fashion/), or on Debian `apt-get install dataset-fashion-mnist`, "
                      "which puts them in /usr/share/datasets/fashion-mnist"),
}
SYSTEM_DIRS = {"fashion_mnist": ("/usr/share/datasets/fashion-mnist",)}
IDX_CLASSES = 10  # MNIST and Fashion-MNIST
CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
}

CIFAR10_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                 "test": ("test_batch.bin",)}
CIFAR10_SHAPE = (3, 32, 32)  # Each record: 1 label byte, then the image as C, H, W bytes.


def load_idx_dataset(data_config) -> RawData:
  """MNIST or Fashion-MNIST from ROOT/<name>/ (IDX files), a system folder, or TFDS."""
  name = data_config.name
  how_to_get = functools.partial(_how_to_get_idx, name)
  return local_or_tfds(data_config, functools.partial(load_idx_dir, name=name),
                       functools.partial(_tfds_images, data_config, how_to_get), how_to_get,
                       SYSTEM_DIRS.get(name, ()))


def load_idx_dir(directory: str, name: str) -> RawData:
  """Reads the four IDX files of an MNIST-style dataset from `directory`."""
  paths = {split: [os.path.join(directory, f) for f in files] for split, files in IDX_FILES.items()}
  missing = [p for ps in paths.values() for p in ps if not _exists(p)]
  if missing:
    raise MissingFilesError(_how_to_get_idx(
        name, f"{', '.join(os.path.basename(p) for p in missing)} not found in {directory}"))
  raw = {}
  for split, (images_path, labels_path) in paths.items():
    images = idx.read_idx(images_path, idx.IMAGES_MAGIC)
    labels = idx.read_idx(labels_path, idx.LABELS_MAGIC)
    if images.ndim != 3 or len(images) != len(labels):
      raise DataError(f"{images_path} holds {images.shape[0]} images of shape {images.shape[1:]}"
                      f" and {labels_path} {len(labels)} labels; they must pair one to one as"
                      " (N, H, W) images and N labels. Download both files again.")
    _check_labels(labels, IDX_CLASSES, labels_path)
    raw[split] = (images[..., None], labels.astype(np.int32))
  return RawData("image", raw["train"], raw["test"], class_names=CLASS_NAMES.get(name, ()))


def _check_labels(labels: np.ndarray, num_classes: int, path: str) -> None:
  """Fails, naming the file and the first bad index, on a label outside 0..num_classes-1."""
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if bad.size:
    raise DataError(f"{path} has label {int(labels[bad[0]])} at index {int(bad[0])} ({bad.size} "
                    f"such labels); this dataset's labels are 0-{num_classes - 1}. The file is "
                    "corrupt or belongs to another dataset: download it again.")


def load_cifar10(data_config) -> RawData:
  """CIFAR-10 from the "binary version" files in ROOT/cifar10/ (or its cifar-10-batches-bin/)."""
  return local_or_tfds(data_config, read_cifar10_dir,
                       functools.partial(_tfds_images, data_config, _how_to_get_cifar10),
                       _how_to_get_cifar10)


def read_cifar10_dir(directory: str) -> RawData:
  nested = os.path.join(directory, "cifar-10-batches-bin")
  if os.path.isdir(nested):
    directory = nested
  missing = [f for files in CIFAR10_FILES.values() for f in files
             if not os.path.exists(os.path.join(directory, f))]
  if missing:
    raise MissingFilesError(_how_to_get_cifar10(f"{', '.join(missing)} not found in {directory}"))
  splits = {split: [_read_cifar10_batch(os.path.join(directory, f)) for f in files]
            for split, files in CIFAR10_FILES.items()}
  train, test = (tuple(np.concatenate(parts) for parts in zip(*splits[s])) for s in splits)
  return RawData("image", train, test, class_names=CLASS_NAMES["cifar10"])


def _read_cifar10_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  record = 1 + int(np.prod(CIFAR10_SHAPE))
  raw = np.fromfile(path, np.uint8)
  if raw.size == 0 or raw.size % record:
    raise DataError(f"{path} holds {raw.size} bytes, not a whole number of {record}-byte "
                    "CIFAR-10 records (1 label byte + 32x32x3 pixels); the file is truncated "
                    "or is not the binary version: download cifar-10-binary.tar.gz again.")
  raw = raw.reshape(-1, record)
  labels = raw[:, 0].astype(np.int32)
  if labels.max() > 9:
    index = int(np.argmax(labels > 9))
    raise DataError(f"{path} has label {labels[index]} at record {index}; CIFAR-10 labels are "
                    "0-9, so this is not a CIFAR-10 binary batch (CIFAR-100's files have two "
                    "label bytes).")
  images = raw[:, 1:].reshape(-1, *CIFAR10_SHAPE).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels


def _tfds_images(data_config, how_to_get) -> RawData:
  if data_config.get("pipeline", "memory") == "grain":  # Read as the batches need them.
    (train, test), class_names = tfds_image_source(data_config, ("train", "test"), how_to_get)
    return RawData("image", train, test, class_names=class_names)
  (train, test), class_names = load_tfds(data_config, ("train", "test"), how_to_get)
  as_arrays = lambda s: (np.asarray(s["image"], np.uint8), np.asarray(s["label"], np.int32))
  return RawData("image", as_arrays(train), as_arrays(test), class_names=class_names)


def normalise_images(images: np.ndarray, mean, std) -> np.ndarray:
  """uint8 pixels -> float32 with the given per-channel mean/std (on [0, 1] scale).

  Looked up in a 256-entry table per channel: the same float32 values as
  `(pixels / 255 - mean) / std`, in one pass instead of four (experiments/README.md
  has the timings).
  """
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  if mean.shape[-1] not in (1, images.shape[-1]) or std.shape != mean.shape:
    raise ConfigError(f"config.data.mean {tuple(mean)} / std {tuple(std)} must have one value "
                      f"per image channel ({images.shape[-1]}).")
  if images.dtype != np.uint8:  # No table for other pixel types.
    return (images.astype(np.float32) / 255.0 - mean) / std
  table = (np.arange(256, dtype=np.float32)[:, None] / 255.0 - mean) / std  # (256, 1 or C)
  if table.shape[1] == 1:
    return table[:, 0][images]
  out = np.empty(images.shape, np.float32)
  for channel in range(images.shape[-1]):
    out[..., channel] = table[:, channel][images[..., channel]]
  return out


def channel_stats(images) -> tuple[tuple, tuple]:
  """Per-channel mean and std of uint8 images on the [0, 1] scale (fitted on train only).

  Computed from each channel's 256-bin histogram, a block of images at a time:
  exact, far faster than converting every pixel to float, and (for image files,
  decoded block by block) without holding them all.
  """
  values = np.arange(256) / 255.0
  channels = images.shape[-1]
  block = max(1, 2**20 // int(np.prod(images.shape[1:])))
  counts = np.zeros((channels, 256), np.int64)
  for start in range(0, len(images), block):
    pixels = np.asarray(images[start:start + block]).reshape(-1, channels)
    for channel in range(channels):
      counts[channel] += np.bincount(pixels[:, channel], minlength=256)
  means, stds = [], []
  for channel_counts in counts:
    mean = channel_counts @ values / channel_counts.sum()
    means.append(float(mean))
    stds.append(float(max(np.sqrt(channel_counts @ (values - mean) ** 2 / channel_counts.sum()),
                          1e-6)))
  return tuple(means), tuple(stds)


def _exists(path: str) -> bool:
  return os.path.exists(path) or (path.endswith(".gz") and os.path.exists(path[:-3]))


def _how_to_get_idx(name: str, reason: str) -> str:
  files = ", ".join(f for pair in IDX_FILES.values() for f in pair)
  return (f"No {name} data: {reason}. Put the four IDX files ({files}) from "
          f"{IDX_ORIGINS[name]} in ROOT/{name}/ {elsewhere(name)}")


def _how_to_get_cifar10(reason: str) -> str:
  return (f"No cifar10 data: {reason}. Unpack cifar-10-binary.tar.gz (the \"binary version\" "
          "from https://www.cs.toronto.edu/~kriz/cifar.html: data_batch_1.bin .. "
          f"data_batch_5.bin, test_batch.bin) into ROOT/cifar10/ {elsewhere('cifar10')}")
