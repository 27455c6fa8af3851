"""What every dataset loader returns, and the helpers loaders share.

A loader returns a `RawData`: the train (and, where the dataset has one, test)
split as read, before anything is fitted. The pipeline then splits it, fits
normalisation / vocabulary / encoders on the training split only, and never
cares which loader ran (local files, TFDS, a generator or the user's arrays).
"""

import contextlib
import contextvars
import io
import os
from typing import Callable, NamedTuple

from absl import logging
import numpy as np

from jaxlearn.data import download
from jaxlearn.data.indexed import IndexedImages
from jaxlearn.errors import ConfigError, DataError, MissingFilesError

DATA_DIR_ENV = "JAXLEARN_DATA_DIR"
SOURCES = ("auto", "local", "tfds")  # auto: local files, downloaded when missing

# RawData.kind: how the pipeline turns inputs into arrays a model takes.
KINDS = {
    "image": "uint8 images (N, H, W, C); normalised per channel",
    "text": "strings; tokenised with a vocabulary built on the training split",
    "table": "string cells (N, columns); numbers standardised, categories one-hot",
    "features": "numeric arrays (N, ...); used as they are",
}


class RawData(NamedTuple):
  """A dataset as read. `train`/`test` are (inputs, targets); `test` None: cut from train.

  `columns` names a table's columns; `class_names` the classes of string labels.
  """
  kind: str
  train: tuple
  test: tuple | None = None
  columns: tuple = ()
  class_names: tuple = ()


def resolve_data_dir(data_config) -> str:
  """The local data root: `config.data.dir`, else $JAXLEARN_DATA_DIR, else ''."""
  return data_config.dir or os.environ.get(DATA_DIR_ENV, "")


def local_or_tfds(data_config, read_local: Callable[[str], RawData],
                  read_tfds: Callable[[], RawData], how_to_get: Callable[[str], str],
                  fallback_dirs: tuple = ()) -> RawData:
  """Reads ROOT/<name>/, downloading the files there first if they are missing; or TFDS.

  ROOT is `config.data.dir` / $JAXLEARN_DATA_DIR; without one, `fallback_dirs`
  (system folders such as Debian's dataset packages) are tried, then the
  download cache. `source='local'` never downloads; `source='tfds'` reads TFDS.
  """
  if data_config.source not in SOURCES:
    raise ConfigError(f"Unknown config.data.source {data_config.source!r}; "
                      f"choose one of {SOURCES}.")
  if data_config.source == "tfds":
    return read_tfds()
  root = resolve_data_dir(data_config)
  if data_config.source == "local" and not root:
    raise DataError(how_to_get("config.data.source='local' but no data root is set"))
  if not root:
    found = [d for d in fallback_dirs if os.path.isdir(d)]
    if found:
      return read_local(found[0])
    root = download.default_root()
  directory = os.path.join(root, data_config.name)
  try:
    return read_local(directory)
  except MissingFilesError:
    if data_config.source == "local" or data_config.name not in download.REMOTE:
      raise
    logging.info("No %s files in %s; downloading them there.", data_config.name, directory)
  download.fetch(data_config.name, directory, download.mirror_of(data_config),
                 lambda reason: how_to_get(f"its files are not in {directory}, and {reason}"))
  return read_local(directory)


# The flag a missing-data message tells the user to pass: training's, unless a command that
# takes its own (evaluate's --data_dir) reads the data inside `data_dir_flag(...)`.
_DATA_DIR_FLAG = contextvars.ContextVar("data_dir_flag", default="--config.data.dir")


@contextlib.contextmanager
def data_dir_flag(flag: str):
  """Within it, missing-data messages name `flag` for the data root."""
  token = _DATA_DIR_FLAG.set(flag)
  try:
    yield
  finally:
    _DATA_DIR_FLAG.reset(token)


def elsewhere(name: str) -> str:
  """The end of every missing-data message: the other ways to get dataset `name`."""
  return (f"and pass {_DATA_DIR_FLAG.get()}=ROOT (or set {DATA_DIR_ENV}=ROOT); or point "
          f"--config.data.mirror=URL (or {download.MIRROR_ENV}) at a copy laid out as "
          f"URL/{name}/<file>; or read TensorFlow Datasets with --config.data.source=tfds "
          "(pip install 'jaxlearn[tfds]').")


# Examples per batch read from TFDS: whole splits at once (batch_size=-1) need TensorFlow to
# hold each split twice, and TFDS's mock data cannot produce them.
TFDS_READ_BATCH = 4096


def load_tfds(data_config, splits: tuple[str, ...], how_to_get: Callable[[str], str],
              tfds_name: str = "") -> tuple[list[dict], tuple]:
  """The given TFDS splits as dicts of numpy arrays, and the label's class names (or ()).

  Downloads and prepares the dataset first if TFDS can.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    reason = ("no data root is set (config.data.dir / $JAXLEARN_DATA_DIR) and "
              "tensorflow-datasets is not installed" if data_config.source == "auto" else
              "config.data.source='tfds' but tensorflow-datasets is not installed")
    raise DataError(how_to_get(reason)) from e
  try:
    loaded, info = tfds.load(tfds_name or data_config.name, split=list(splits),
                             batch_size=TFDS_READ_BATCH, with_info=True,
                             data_dir=data_config.tfds_data_dir or None)
    arrays = [_concatenate(list(tfds.as_numpy(split))) for split in loaded]
  except Exception as e:  # TFDS raises many kinds when offline or unprepared.
    raise DataError(how_to_get(f"TFDS could not load or download it ({e})")) from e
  label = info.features["label"] if "label" in info.features else None
  return arrays, tuple(getattr(label, "names", None) or ())


class TfdsImages(IndexedImages):
  """A TFDS image dataset's splits, read through `tfds.data_source` when indexed.

  `parts` are (name, split, data_dir) triples. Images are decoded here (PIL)
  rather than by TFDS, so Grain's workers never start TensorFlow's runtime.
  """

  def _open_part(self, part):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    name, split, data_dir = part
    return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False,
                            decoders={"image": tfds.decode.SkipDecoding()})

  def _read_records(self, source, keys: list[int]) -> list:
    # One by one: TFDS deserialises its records one at a time either way, and its batched
    # read fails on the mock data sources of `tfds.testing.mock_data`, which the tests use.
    return [source[k] for k in keys]

  def _decode(self, record, row: int) -> np.ndarray:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with Image.open(io.BytesIO(record["image"])) as image:
      return np.asarray(image, np.uint8).reshape(self.image_shape)


def tfds_image_source(data_config, splits: tuple[str, ...], how_to_get: Callable[[str], str]
                      ) -> tuple[list[tuple], tuple]:
  """The TFDS splits as (TfdsImages, int32 labels) pairs, and the class names.

  For `config.data.pipeline = "grain"`: the images stay in TFDS's ArrayRecord
  files (downloaded and prepared first if TFDS can) and are read as batches
  need them; only the labels are read now.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(how_to_get("config.data.source='tfds' but tensorflow-datasets is not "
                               "installed")) from e
  name, data_dir = data_config.name, data_config.tfds_data_dir
  try:
    sources = [tfds.data_source(name, split=s, data_dir=data_dir or None,
                                decoders={"image": tfds.decode.SkipDecoding()}) for s in splits]
    labels = [np.array([int(source[i]["label"]) for i in range(len(source))], np.int32)
              for source in sources]
    features = sources[0].dataset_info.features
  except Exception as e:  # TFDS raises many kinds when offline or unprepared.
    raise DataError(how_to_get(f"TFDS could not open it as a data source ({e})")) from e
  shape = tuple(features["image"].shape)
  if None in shape:
    raise DataError(f"TFDS's {name} has images of varying size {shape}; stream it from an image "
                    "folder with --config.data.image_size set, or use --config.data.pipeline="
                    "memory.")
  parts = tuple((name, s, data_dir) for s in splits)
  counts = tuple(len(source) for source in sources)
  images = [TfdsImages.part(parts, counts, i, shape) for i in range(len(splits))]
  names = tuple(getattr(features["label"], "names", None) or ())
  return list(zip(images, labels)), names


def _concatenate(batches: list[dict]) -> dict:
  return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def check_pairs(inputs, targets, what: str) -> None:
  """Inputs and targets must pair one to one, and a split must not be empty."""
  if len(inputs) != len(targets):
    raise DataError(f"{what} has {len(inputs)} inputs but {len(targets)} targets; they must "
                    "pair one to one.")
  if len(inputs) == 0:
    raise DataError(f"{what} holds no examples; check the file or folder it was read from.")


def check_kind(kind: str) -> None:
  if kind not in KINDS:
    raise ConfigError(f"Unknown data kind {kind!r}; choose one of {sorted(KINDS)}.")


def labels_to_ids(labels, class_names: tuple = ()) -> tuple[np.ndarray, tuple]:
  """Integer labels as int32; string labels as indices into (sorted) `class_names`."""
  labels = np.asarray(labels)
  if labels.dtype.kind in "iub":
    return labels.astype(np.int32), class_names
  labels = labels.astype(str)
  class_names = class_names or tuple(sorted(set(labels)))
  index = {name: i for i, name in enumerate(class_names)}
  unknown = sorted(set(labels) - set(index))
  if unknown:
    raise DataError(f"Labels {unknown[:5]} are not among the classes {list(class_names)}.")
  return np.array([index[label] for label in labels], np.int32), class_names
