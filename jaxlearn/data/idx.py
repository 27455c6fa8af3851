"""Reader for the IDX format that MNIST and Fashion-MNIST are distributed in."""

import gzip
import os
import zlib

import numpy as np

from jaxlearn.errors import DataError

# IDX magic numbers: 0x0000 0x08 (unsigned byte) then the number of dimensions.
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def read_idx(path: str, expected_magic: int) -> np.ndarray:
  """Reads an IDX file (gzip-compressed or raw) into a uint8 array.

  Args:
    path: the `.gz` file; if it is absent, the same name without `.gz` is read.
    expected_magic: IMAGES_MAGIC or LABELS_MAGIC.

  Returns:
    An array shaped as the header says, e.g. (60000, 28, 28) for images.

  Raises:
    DataError: the file is missing, truncated, not gzip, or not the expected IDX.
  """
  raw = _read_bytes(path)
  if len(raw) < 4:
    raise DataError(f"{path} is only {len(raw)} bytes, too short for an IDX header; "
                    "the file is truncated: download it again.")
  magic = int.from_bytes(raw[:4], "big")
  if magic != expected_magic:
    kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
    raise DataError(
        f"{path} has IDX magic number {magic}, but an {kind} file starts with "
        f"{expected_magic}; the file is corrupt or is not an IDX {kind} file "
        "(were images and labels swapped?). Download the original file again.")
  ndim = raw[3]
  header_size = 4 + 4 * ndim
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  expected_size = header_size + int(np.prod(shape))
  if len(raw) != expected_size:
    raise DataError(
        f"{path} holds {len(raw)} bytes but its IDX header {shape} needs "
        f"{expected_size}; the file is truncated or corrupt: download it again.")
  return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_bytes(path: str) -> bytes:
  """Returns the decompressed bytes of `path`, or those of its un-gzipped twin."""
  if not os.path.exists(path) and path.endswith(".gz") and os.path.exists(path[:-3]):
    with open(path[:-3], "rb") as f:
      return f.read()
  try:
    with gzip.open(path, "rb") as f:
      return f.read()
  except (EOFError, zlib.error, gzip.BadGzipFile) as e:
    raise DataError(f"{path} is not a readable gzip file ({e}); it is truncated or "
                    "corrupt: download it again.") from e
