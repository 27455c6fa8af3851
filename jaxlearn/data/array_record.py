"""Image datasets as ArrayRecord files (`config.data.name = "array_record"`).

ArrayRecord is the random-access file format Grain reads best: one file per
split, any record found by its index without reading the others, so a dataset
larger than RAM streams (`config.data.pipeline = "grain"`) with no decoding
cost beyond a copy. `config.data.path` is a folder written by `write`:

  DIR/dataset.json        image shape, class names, and each split's file and labels
  DIR/train.array_record  one record per image: its uint8 pixels (H * W * C bytes)
  DIR/test.array_record   (when the dataset has a test split)

Make one from any image dataset jaxlearn reads (MNIST, CIFAR-10, an image folder) with
`python -m jaxlearn.data.records --config=configs/mnist_lenet.py --out=DIR`.

Labels sit in dataset.json so that a run knows them all at once (splitting and
batching need them) without reading every image.
"""

import json
import os
import shutil
import tempfile

import numpy as np

from jaxlearn.data.indexed import IndexedImages
from jaxlearn.data.sources import RawData
from jaxlearn.errors import ConfigError, DataError, MissingFilesError

FORMAT = "jaxlearn image records 1"
INDEX_FILE = "dataset.json"
SPLITS = ("train", "test")
WRITE_CHUNK = 1024  # images read at a time while writing


class RecordImages(IndexedImages):
  """uint8 images (N, H, W, C), one ArrayRecord record of raw pixels each (see IndexedImages)."""

  def _open_part(self, part: str):
    import grain  # pylint: disable=import-outside-toplevel
    return grain.sources.ArrayRecordDataSource([part])

  def _decode(self, record: bytes, row: int) -> np.ndarray:
    if len(record) != int(np.prod(self.image_shape)):
      raise DataError(f"Record {row} of {', '.join(self.parts)} holds {len(record)} bytes, not "
                      f"the {int(np.prod(self.image_shape))} of a {self.image_shape} uint8 image; "
                      "the files are corrupt or from another dataset: write them again.")
    return np.frombuffer(record, np.uint8).reshape(self.image_shape)


def load_records(data_config) -> RawData:
  """The folder at config.data.path (written by `write`) as a RawData of RecordImages."""
  root = data_config.path
  if not root:
    raise ConfigError("config.data.name='array_record' reads config.data.path; set it to a "
                      "folder written by `python -m jaxlearn.data.records`.")
  index_path = os.path.join(root, INDEX_FILE)
  if not os.path.isfile(index_path):
    raise MissingFilesError(f"{index_path} not found; config.data.path must be a folder written "
                            "by `python -m jaxlearn.data.records --config=CONFIG --out=DIR`.")
  try:
    with open(index_path) as f:
      index = json.load(f)
    shape = tuple(index["image_shape"])
    splits = {s: index["splits"][s] for s in SPLITS if s in index["splits"]}
    files = [os.path.join(root, splits[s]["file"]) for s in splits]
    labels = {s: np.asarray(splits[s]["labels"], np.int32) for s in splits}
  except (ValueError, KeyError, TypeError) as e:
    raise DataError(f"{index_path} is not a dataset index written by jaxlearn ({e!r}); write the "
                    "folder again with `python -m jaxlearn.data.records`.") from e
  if index.get("format") != FORMAT or "train" not in splits:
    raise DataError(f"{index_path} has format {index.get('format')!r} and splits "
                    f"{sorted(splits)}; jaxlearn reads {FORMAT!r} with a train split. Write the "
                    "folder again with `python -m jaxlearn.data.records`.")
  counts = [_count_records(path) for path in files]
  for split, path, count in zip(splits, files, counts):
    if count != len(labels[split]):
      raise DataError(f"{path} holds {count} records but {index_path} lists "
                      f"{len(labels[split])} labels for it; the folder is incomplete or corrupt: "
                      "write it again.")
  parts = {s: (RecordImages.part(files, counts, i, shape), labels[s])
           for i, s in enumerate(splits)}
  return RawData("image", parts["train"], parts.get("test"),
                 class_names=tuple(index.get("class_names", ())))


def _count_records(path: str) -> int:
  if not os.path.isfile(path):
    raise MissingFilesError(f"{path} not found; the records folder is incomplete: write it "
                            "again with `python -m jaxlearn.data.records`.")
  array_record_module = _array_record()
  try:
    reader = array_record_module.ArrayRecordReader(path)
    try:
      return reader.num_records()
    finally:
      reader.close()
  except Exception as e:  # pylint: disable=broad-except  # The C++ reader's errors have no type.
    raise DataError(f"{path} cannot be read as an ArrayRecord file ({e}); write the folder "
                    "again with `python -m jaxlearn.data.records`.") from e


def check_new(out_dir: str) -> None:
  """Refuses a folder that exists: records are written only into a new one."""
  if os.path.exists(out_dir):
    raise ConfigError(f"{out_dir} already exists; pass a new folder to write the records into "
                      "(an existing one is never overwritten).")


def _array_record():
  try:
    from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ConfigError("ArrayRecord datasets need the array_record package, which comes with "
                      "Grain: pip install 'jaxlearn[grain]'.") from e
  return array_record_module


def write(raw: RawData, out_dir: str) -> str:
  """Writes `raw` (an image dataset) as ArrayRecord files in the new folder `out_dir`.

  The folder is written under a temporary name and renamed into place when
  complete, so an interrupted write leaves nothing that reads as a dataset;
  an existing `out_dir` is never overwritten.
  """
  if raw.kind != "image":
    raise ConfigError(f"Only image datasets are written as records; this one is {raw.kind!r}.")
  check_new(out_dir)
  array_record_module = _array_record()
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  partial = tempfile.mkdtemp(prefix=".records-", dir=parent)
  try:
    index = {"format": FORMAT, "image_shape": list(raw.train[0].shape[1:]),
             "class_names": list(raw.class_names), "splits": {}}
    for name, split in zip(SPLITS, (raw.train, raw.test)):
      if split is None:
        continue
      images, labels = split
      writer = array_record_module.ArrayRecordWriter(
          os.path.join(partial, f"{name}.array_record"), "group_size:1")
      for start in range(0, len(labels), WRITE_CHUNK):
        for image in np.asarray(images[start:start + WRITE_CHUNK], np.uint8):
          writer.write(np.ascontiguousarray(image).tobytes())
      writer.close()
      index["splits"][name] = {"file": f"{name}.array_record",
                               "labels": np.asarray(labels).astype(int).tolist()}
    with open(os.path.join(partial, INDEX_FILE), "w") as f:
      json.dump(index, f)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o777 & ~umask)  # mkdtemp's folder is private; the dataset need not be.
    os.rename(partial, out_dir)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  return out_dir
