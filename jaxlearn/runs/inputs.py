"""Raw inputs a user brings -> the arrays a trained run stores its data as.

An image file of any size and mode, a PIL image, a NumPy array, a sentence or
a table row becomes one example shaped and typed as the run's data was
(uint8 pixels, int32 token ids, float32 encoded features). Conversions that
training never did (resizing, colour <-> grayscale, dropping alpha) are
returned as notes, so that the user sees them. Normalisation is not done here:
the inference function does it (see `jaxlearn.runs.inference`).
"""

import io
import os
from typing import Any, NamedTuple

import numpy as np

from jaxlearn.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class TooManyPixels(InputError):
  """An image larger than the pixels a caller decodes for one request."""


class InputSpec(NamedTuple):
  """One example as stored: its kind, shape and dtype, and what encodes it."""
  kind: str  # image | text | table | features
  shape: tuple
  dtype: str
  preprocessing: dict  # vocabulary / max_length, or the table encoder's columns

  @classmethod
  def from_preprocessing(cls, preprocessing: dict) -> "InputSpec":
    spec = preprocessing["input"]
    return cls(spec["kind"], tuple(spec["shape"]), spec["dtype"], preprocessing)

  def describe(self) -> str:
    """What one example must be, in words (for error messages)."""
    if self.kind == "image":
      h, w, c = self.shape
      also = f" or ({h}, {w})" if c == 1 else ""
      return (f"an image file, a PIL image or a uint8 array of {h}x{w} pixels with {c} "
              f"channel{'s' if c > 1 else ''}, shaped ({h}, {w}, {c}){also}")
    if self.kind == "text":
      return "a non-empty string"
    if self.kind == "table":
      names = [c["name"] for c in self.preprocessing["columns"]]
      return f"a row: a dict of the columns {names}"
    return f"a number array shaped {self.shape}"


def encode_many(raw_inputs, spec: InputSpec,
                invert: bool = False) -> tuple[np.ndarray, list[list[str]]]:
  """A batch of stored examples, and each one's conversion notes."""
  if isinstance(raw_inputs, (str, bytes, dict)) or not hasattr(raw_inputs, "__len__"):
    raise InputError("predict takes a list of inputs (one per example); wrap a single input "
                     "in a list.")
  if isinstance(raw_inputs, np.ndarray) and raw_inputs.shape[1:] == spec.shape and not invert:
    return check_stored(raw_inputs.astype(spec.dtype, copy=False) if _fits_dtype(
        raw_inputs, spec) else raw_inputs, spec), [[] for _ in raw_inputs]
  encoded = [encode(x, spec, invert) for x in raw_inputs]
  if not encoded:
    raise InputError("No inputs were given.")
  return np.stack([e for e, _ in encoded]), [notes for _, notes in encoded]


def encode(raw, spec: InputSpec, invert: bool = False) -> tuple[np.ndarray, list[str]]:
  """One raw input as a stored example, and notes on the conversions made.

  `invert` turns an image's pixels p into 255 - p (dark ink on light paper
  for a model trained on light strokes on black, as MNIST's).
  """
  if spec.kind == "image":
    pixels, notes = _encode_image(raw, spec)
    if invert:
      pixels, notes = 255 - pixels, notes + ["inverted (255 - pixel)"]
    return pixels, notes + _brightness_note(pixels, spec, invert)
  if spec.kind == "text":
    return _encode_text(raw, spec)
  if spec.kind == "table":
    return _encode_row(raw, spec)
  try:
    array = np.asarray(_load_npy(raw) if isinstance(raw, (str, os.PathLike)) else raw, np.float32)
  except (TypeError, ValueError) as e:
    raise InputError(f"Got {type(raw).__name__} values that are not numbers; the model takes "
                     f"{spec.describe()} of float32.") from e
  if array.shape != spec.shape:
    raise InputError(f"Got an array shaped {array.shape}; the model takes {spec.describe()}.")
  return array, []


def check_stored(stored: np.ndarray, spec: InputSpec) -> np.ndarray:
  """Fails, naming the expected shape and dtype, on a batch that is not as stored."""
  stored = np.asarray(stored)
  if stored.ndim != len(spec.shape) + 1 or stored.shape[1:] != spec.shape:
    raise InputError(f"Got a batch shaped {stored.shape}; the model takes batches shaped "
                     f"(batch, {', '.join(map(str, spec.shape))}) of {spec.dtype}.")
  if stored.dtype != np.dtype(spec.dtype):
    raise InputError(f"Got a batch of {stored.dtype}; the model takes {spec.dtype} "
                     f"(shaped (batch, {', '.join(map(str, spec.shape))})).")
  return stored


def read_image_file(path: str):
  """A PIL image from a file, or an InputError naming the file."""
  from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(path) as image:
      image.load()
      return image.copy()
  except FileNotFoundError as e:
    raise InputError(f"{path} not found.") from e
  except Image.DecompressionBombError as e:
    raise InputError(f"{path} is too large to decode: {e}") from e
  except (UnidentifiedImageError, OSError) as e:
    raise InputError(f"{path} is not an image PIL can read (PNG, JPEG, ...).") from e


def image_from_bytes(data: bytes, what: str = "The upload", max_pixels: int = 0):
  """A PIL image from encoded bytes (PNG, JPEG, ...), or an InputError.

  `max_pixels` > 0 refuses a larger image from its header, before it is decoded.
  """
  from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
  try:
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    if max_pixels and width * height > max_pixels:
      raise TooManyPixels(f"{what} is {width}x{height} pixels; the request may carry "
                          f"{max_pixels} more (--max_pixels). Send smaller images, or fewer "
                          "per request.")
    image.load()
    return image
  except Image.DecompressionBombError as e:
    raise InputError(f"{what} is too large to decode: {e}") from e
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise InputError(f"{what} is not an image that can be decoded (PNG, JPEG, ...).") from e


def _encode_image(raw, spec: InputSpec) -> tuple[np.ndarray, list[str]]:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  height, width, channels = spec.shape
  if isinstance(raw, (str, os.PathLike)):
    path = os.fspath(raw)
    if path.endswith(".npy"):
      return _image_array(_load_npy(path), spec), []
    raw = read_image_file(path)
  if isinstance(raw, Image.Image):
    return _convert_pil(raw, height, width, channels)
  return _image_array(np.asarray(raw), spec), []


# How far (on the [0, 1] scale) an image's mean may be from the training images' before
# the prediction comes with a note: MNIST's mean is 0.13, a photographed digit's about 0.8.
BRIGHTNESS_GAP = 0.4


def _brightness_note(pixels: np.ndarray, spec: InputSpec, inverted: bool) -> list[str]:
  mean = spec.preprocessing.get("mean")
  if not mean:
    return []
  image_mean, train_mean = float(pixels.mean()) / 255, float(np.mean(mean))
  if abs(image_mean - train_mean) <= BRIGHTNESS_GAP:
    return []
  hint = "" if inverted else "; if it is dark on light while the training images are light on " \
      "dark (or the reverse), invert it (--invert)"
  return [f"much {'lighter' if image_mean > train_mean else 'darker'} than the training "
          f"images (mean {image_mean:.2f} against {train_mean:.2f}){hint}"]


def _convert_pil(image, height: int, width: int, channels: int) -> tuple[np.ndarray, list[str]]:
  """Mode and size as the model's data; every change made is noted."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  notes, mode = [], image.mode
  if mode.startswith("I;16") or mode == "I":  # 16-bit (or 32-bit integer) grey: to 8 bits.
    top = 65535 if mode.startswith("I;16") or np.asarray(image).max() > 255 else 255
    pixels = np.clip(np.asarray(image, np.float64) * 255 / top, 0, 255).round()
    image = Image.fromarray(pixels.astype(np.uint8), "L")
    if top == 65535:
      notes.append("scaled from 16 to 8 bits per pixel")
  if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, image.convert("RGBA"))
    notes.append("transparency flattened onto white")
  target = "L" if channels == 1 else "RGB"
  if image.mode != target:
    if mode not in (target, "P") or channels == 1:
      notes.append(f"converted from {mode} to {'grayscale' if channels == 1 else 'RGB'}")
    image = image.convert(target)
  if image.size != (width, height):
    notes.append(f"resized from {image.size[0]}x{image.size[1]} to {width}x{height}")
    image = image.resize((width, height), resample=Image.Resampling.BICUBIC)
  array = np.asarray(image, np.uint8)
  return (array[..., None] if array.ndim == 2 else array), notes


def _image_array(array: np.ndarray, spec: InputSpec) -> np.ndarray:
  if array.ndim == 2 and spec.shape[2] == 1:
    array = array[..., None]
  if array.shape != spec.shape:
    raise InputError(f"Got an array shaped {array.shape}; the model takes {spec.describe()}.")
  if array.dtype.kind not in "iuf":
    raise InputError(f"Got an array of {array.dtype}; the model takes {spec.describe()} "
                     "(numbers, not text or objects).")
  if not _fits_dtype(array, spec):
    raise InputError(f"Got an array of {array.dtype} with values {array.min()}..{array.max()};"
                     f" the model takes {spec.describe()} (whole numbers 0-255).")
  return array.astype(np.uint8)


def _fits_dtype(array: np.ndarray, spec: InputSpec) -> bool:
  if spec.dtype != "uint8":
    return array.dtype.kind in "iuf"
  if array.dtype == np.uint8:
    return True
  if array.dtype.kind not in "iuf" or array.size == 0 or array.min() < 0 or array.max() > 255:
    return False
  return array.dtype.kind != "f" or bool(np.all(array == np.round(array)))


def _load_npy(path: str) -> np.ndarray:
  try:
    return np.load(path, allow_pickle=False)
  except FileNotFoundError as e:
    raise InputError(f"{path} not found.") from e
  except (ValueError, EOFError, OSError) as e:
    raise InputError(f"{path} is not a NumPy .npy array file ({type(e).__name__}: "
                     f"{str(e) or 'empty'}).") from e


def _encode_text(raw: Any, spec: InputSpec) -> tuple[np.ndarray, list[str]]:
  from jaxlearn.data import text  # pylint: disable=import-outside-toplevel
  if not isinstance(raw, str) or not raw.strip():
    got = "an empty string" if isinstance(raw, str) else f"a {type(raw).__name__}"
    raise InputError(f"Got {got}; the model takes {spec.describe()} of text.")
  vocabulary, length = spec.preprocessing["vocabulary"], spec.preprocessing["max_length"]
  words = text.tokenize(raw)
  notes = []
  unknown = sum(w not in vocabulary for w in words)
  if unknown:
    notes.append(f"{unknown} of {len(words)} words not in the training vocabulary")
  if len(words) > length:
    notes.append(f"cut to the first {length} of {len(words)} words")
  return text.encode([raw], vocabulary, length)[0], notes


def _encode_row(raw: Any, spec: InputSpec) -> tuple[np.ndarray, list[str]]:
  from jaxlearn.data import tabular  # pylint: disable=import-outside-toplevel
  columns = spec.preprocessing["columns"]
  names = [c["name"] for c in columns]
  if not isinstance(raw, dict):
    raise InputError(f"Got a {type(raw).__name__}; the model takes {spec.describe()}.")
  unknown = sorted(set(raw) - set(names))
  missing = [n for n in names if n not in raw]
  notes = []
  if missing:
    notes.append(f"missing {missing}: filled as training filled missing cells")
  if unknown:
    notes.append(f"ignored columns the model was not trained on: {unknown}")
  cells = np.array([[str(raw.get(n, "")) for n in names]], object)
  return tabular.encode_table(cells, columns)[0], notes
