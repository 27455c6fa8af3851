"""Images read one by one from random-access sources (ArrayRecord files, TFDS data sources)."""

import numpy as np


class IndexedImages:
  """uint8 images (N, H, W, C) read from their sources only when indexed.

  Like `folders.ImageFiles`: an integer index reads one image, a slice or an
  index array gives another of this class over those rows, and `np.asarray`
  reads them. The sources are `parts` (files, or a dataset's splits) of
  `counts` records each; `rows` index all their records taken in order.
  Picklable: each process (Grain's workers too) opens the sources itself.
  Subclasses say how to open a part and decode one record.
  """
  dtype = np.dtype(np.uint8)
  ndim = 4

  def __init__(self, parts: tuple, counts: tuple, rows, image_shape: tuple):
    self.parts, self.counts = tuple(parts), tuple(int(c) for c in counts)
    self.rows, self.image_shape = np.asarray(rows, np.int64), tuple(image_shape)
    self._sources = None

  @classmethod
  def part(cls, parts, counts, index: int, image_shape) -> "IndexedImages":
    """All the records of part `index` (say, the train split), over every part's sources."""
    start = int(np.sum(counts[:index]))
    return cls(parts, counts, np.arange(start, start + counts[index]), image_shape)

  def _open_part(self, part):
    """A random-access source (len, [i]) of `part`'s records."""
    raise NotImplementedError

  def _decode(self, record, row: int) -> np.ndarray:
    """Record number `row` as a uint8 (H, W, C) image."""
    raise NotImplementedError

  @property
  def shape(self) -> tuple:
    return (len(self.rows), *self.image_shape)

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, index):
    if isinstance(index, (int, np.integer)):
      return self._read(int(self.rows[index]))
    return type(self)(self.parts, self.counts, self.rows[index], self.image_shape)

  def __array__(self, dtype=None, copy=None):
    del copy
    out = np.empty(self.shape, np.uint8)
    for i, row in enumerate(self.rows):
      out[i] = self._read(int(row))
    return out if dtype is None else out.astype(dtype)

  def concatenate(self, parts: list["IndexedImages"]) -> "IndexedImages":
    if any((p.parts, p.counts) != (self.parts, self.counts) for p in parts):
      raise ValueError("Images of different sources cannot be joined.")
    return type(self)(self.parts, self.counts, np.concatenate([p.rows for p in parts]),
                      self.image_shape)

  def _read(self, row: int) -> np.ndarray:
    if self._sources is None:
      self._sources = [self._open_part(p) for p in self.parts]
    part = int(np.searchsorted(np.cumsum(self.counts), row, side="right"))
    return self._decode(self._sources[part][row - int(np.sum(self.counts[:part]))], row)

  def __getstate__(self):
    return {**self.__dict__, "_sources": None}
