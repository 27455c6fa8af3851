"""Your own images: a folder with one subfolder per class (`config.data.name = "image_folder"`).

  ROOT/<class>/*.png|jpg|jpeg|bmp|gif|webp         split train:val:test by the ratios
  ROOT/train/<class>/...  and  ROOT/test/<class>/... the folder's own test split

`config.data.path` is ROOT. Class names are the subfolder names, sorted. Every
image is decoded to `config.data.image_size` (height, width; empty: the size of
the first image, which all must then share) and `config.data.channels` (1 grey,
3 RGB; 0: grey if the first image is, else RGB).

The images are an `ImageFiles`: a lazy uint8 array (N, H, W, C) that decodes
only what is indexed, so the memory pipeline reads them all once while the
streaming one (`config.data.pipeline = "grain"`) decodes each batch in worker
processes as it needs it.
"""

import os

import numpy as np
from PIL import Image

from jaxlearn.data.sources import RawData
from jaxlearn.errors import ConfigError, DataError, MissingFilesError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class ImageFiles:
  """uint8 images (N, H, W, C) read from files when indexed; a random-access data source.

  An integer index decodes one image; a slice or an index array gives another
  ImageFiles over those files; `np.asarray` decodes them all.
  """
  dtype = np.dtype(np.uint8)
  ndim = 4

  def __init__(self, paths, size: tuple[int, int], channels: int, resize: bool = True):
    self.paths = np.asarray(paths, object)
    self.size, self.channels, self.resize = tuple(size), channels, resize

  @property
  def shape(self) -> tuple:
    return (len(self.paths), *self.size, self.channels)

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index):
    if isinstance(index, (int, np.integer)):
      return decode(self.paths[index], self.size, self.channels, self.resize)
    return ImageFiles(self.paths[index], self.size, self.channels, self.resize)

  def __array__(self, dtype=None, copy=None):
    del copy
    out = np.empty(self.shape, np.uint8)
    for i in range(len(self)):
      out[i] = self[i]
    return out if dtype is None else out.astype(dtype)

  def concatenate(self, parts: list["ImageFiles"]) -> "ImageFiles":
    return ImageFiles(np.concatenate([p.paths for p in parts]), self.size, self.channels,
                      self.resize)


def decode(path: str, size: tuple[int, int], channels: int, resize: bool = True) -> np.ndarray:
  """One image file as uint8 (H, W, C), converted to `channels` and resized to `size`."""
  try:
    with Image.open(path) as image:
      image = image.convert("L" if channels == 1 else "RGB")
      if image.size != (size[1], size[0]):
        if not resize:
          raise DataError(f"{path} is {image.size[1]}x{image.size[0]} but the folder's first "
                          f"image is {size[0]}x{size[1]}; set --config.data.image_size="
                          f"'({size[0]}, {size[1]})' to resize every image to one size.")
        image = image.resize((size[1], size[0]), Image.BILINEAR)
      pixels = np.asarray(image, np.uint8)
  except (OSError, ValueError) as e:
    raise DataError(f"{path} cannot be read as an image ({e}); remove it from the folder or "
                    "replace it with a readable PNG/JPEG.") from e
  return pixels.reshape(*size, channels)


def load_image_folder(data_config) -> RawData:
  """The folder at config.data.path as a RawData of ImageFiles (see the module doc)."""
  root = data_config.path
  if not root:
    raise ConfigError("config.data.name='image_folder' reads config.data.path; set it to a "
                      "folder holding one subfolder of images per class.")
  if not os.path.isdir(root):
    raise MissingFilesError(f"config.data.path={root!r} is not a folder; pass a folder holding "
                            "one subfolder of images per class (ROOT/<class>/*.png).")
  has_splits = all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test"))
  train_paths, train_labels, names = list_classes(os.path.join(root, "train") if has_splits
                                                  else root)
  size, channels = _image_format(train_paths[0], data_config)
  resize = bool(data_config.image_size)
  train = (ImageFiles(train_paths, size, channels, resize), train_labels)
  test = None
  if has_splits:
    test_paths, test_labels, test_names = list_classes(os.path.join(root, "test"))
    unknown = sorted(set(test_names) - set(names))
    if unknown:
      raise DataError(f"{root}/test has classes {unknown} that {root}/train lacks; both must "
                      "hold the same class subfolders.")
    index = {n: i for i, n in enumerate(names)}
    test = (ImageFiles(test_paths, size, channels, resize),
            np.array([index[test_names[label]] for label in test_labels], np.int32))
  return RawData("image", train, test, class_names=tuple(names))


def list_classes(folder: str) -> tuple[list[str], np.ndarray, list[str]]:
  """(image paths, int32 labels, class names) of `folder`/<class>/<image>, in sorted order."""
  names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))
                 and not d.startswith("."))
  paths, labels = [], []
  for label, name in enumerate(names):
    files = sorted(f for f in os.listdir(os.path.join(folder, name))
                   if f.lower().endswith(EXTENSIONS))
    paths += [os.path.join(folder, name, f) for f in files]
    labels += [label] * len(files)
  if len(names) < 2 or not paths:
    raise MissingFilesError(
        f"{folder} holds {len(names)} class subfolder(s) and {len(paths)} images; an image "
        f"folder needs at least two subfolders (one per class) of {'/'.join(EXTENSIONS)} files.")
  return paths, np.array(labels, np.int32), names


def _image_format(first: str, data_config) -> tuple[tuple[int, int], int]:
  """(height, width) and channels: the config's, else those of the first image."""
  with Image.open(first) as image:
    width, height = image.size
    grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
  size = tuple(data_config.image_size) or (height, width)
  channels = data_config.channels or (1 if grey else 3)
  if len(size) != 2 or min(size) < 1 or channels not in (1, 3):
    raise ConfigError(f"config.data.image_size={tuple(data_config.image_size)} must be "
                      f"(height, width), both positive, and config.data.channels={data_config.channels} 1, 3 or "
                      "0 (from the first image).")
  return size, channels
