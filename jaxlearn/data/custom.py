"""Your own data in the same pipeline: numpy arrays, or a Grain-style source.

Example:
  raw = data.from_arrays(train=(x_train, y_train), test=(x_test, y_test))
  summary = train.train_and_evaluate(config, workdir, raw=raw)

A source is anything with `len(source)` and `source[i]` returning
`{"inputs": ..., "targets": ...}` (or an `(inputs, target)` pair), such as a
`grain.MapDataset` or a small class of your own; it is read into memory once.
"""

import numpy as np

from jaxlearn.data.sources import RawData, check_kind, check_pairs
from jaxlearn.errors import DataError


def from_arrays(train: tuple, test: tuple | None = None, kind: str = "") -> RawData:
  """A RawData of (inputs, targets) arrays; `kind` is inferred when empty.

  uint8 inputs of 3 or 4 dimensions are images ((N, H, W) gains a channel),
  strings are text, anything else numeric features used as they are.
  """
  kind = kind or _infer_kind(np.asarray(train[0]))
  check_kind(kind)
  splits = [_checked(split, kind, name) for split, name in ((train, "train"), (test, "test"))
            if split is not None]
  if len(splits) == 2 and splits[0][0].shape[1:] != splits[1][0].shape[1:] and kind != "text":
    raise DataError(f"The train inputs are shaped {splits[0][0].shape[1:]} per example but the "
                    f"test inputs {splits[1][0].shape[1:]}; both splits need the same shape.")
  return RawData(kind, splits[0], splits[1] if len(splits) == 2 else None)


def from_source(source, test_source=None, kind: str = "") -> RawData:
  """Reads a Grain-style source (len + getitem) into arrays; see `from_arrays`."""
  return from_arrays(_read_all(source, "source"),
                     None if test_source is None else _read_all(test_source, "test_source"), kind)


def _read_all(source, what: str) -> tuple[np.ndarray, np.ndarray]:
  inputs, targets = [], []
  for i in range(len(source)):
    item = source[i]
    x, y = (item["inputs"], item["targets"]) if isinstance(item, dict) else item
    x = np.asarray(x)
    if inputs and x.shape != inputs[0].shape:
      raise DataError(f"{what}[{i}] has inputs of shape {x.shape} but {what}[0] has "
                      f"{inputs[0].shape}; every example must have the same shape (resize or "
                      "pad them in the source).")
    inputs.append(x)
    targets.append(y)
  check_pairs(inputs, targets, what)
  return np.stack(inputs), np.asarray(targets)


def _infer_kind(inputs: np.ndarray) -> str:
  if inputs.dtype.kind in "USO":
    return "text"
  if inputs.dtype == np.uint8 and inputs.ndim in (3, 4):
    return "image"
  return "features"


def _checked(split: tuple, kind: str, name: str) -> tuple[np.ndarray, np.ndarray]:
  inputs, targets = np.asarray(split[0]), np.asarray(split[1])
  check_pairs(inputs, targets, f"The {name} split")
  if kind == "image":
    if inputs.ndim == 3:
      inputs = inputs[..., None]
    if inputs.ndim != 4 or inputs.dtype != np.uint8:
      raise DataError(f"The {name} images are {inputs.dtype} of shape {inputs.shape}; images "
                      "must be uint8 (N, H, W) or (N, H, W, C) arrays of 0-255 pixels.")
  if kind == "text":
    inputs = inputs.astype(object)
  if targets.dtype.kind not in "iufb":
    raise DataError(f"The {name} targets are {targets.dtype}; use integer class ids or numbers.")
  targets = targets.astype(np.int32 if targets.dtype.kind in "iub" else np.float32)
  return inputs, targets
