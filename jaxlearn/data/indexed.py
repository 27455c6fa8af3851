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

  def __init__(self, parts: tuple, counts: tuple, rows, image_shape: tuple, _opened=None):
    self.parts, self.counts = tuple(parts), tuple(int(c) for c in counts)
    self.rows, self.image_shape = np.asarray(rows, np.int64), tuple(image_shape)
    self._starts = np.concatenate([[0], np.cumsum(self.counts)])
    # The opened sources, shared with every subset taken from this one (opening costs more
    # than reading a batch).
    self._opened = {} if _opened is None else _opened

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

  def _read_records(self, source, keys: list[int]) -> list:
    """The records at `keys` of one source, in one batched read where it has one."""
    if hasattr(source, "__getitems__"):
      return source.__getitems__(keys)
    return [source[k] for k in keys]

  @property
  def shape(self) -> tuple:
    return (len(self.rows), *self.image_shape)

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, index):
    if isinstance(index, (int, np.integer)):
      row = int(self.rows[index])
      part = self._part_of(np.array([row]))[0]
      return self._decode(self._source(part)[row - int(self._starts[part])], row)
    return type(self)(self.parts, self.counts, self.rows[index], self.image_shape, self._opened)

  def __array__(self, dtype=None, copy=None):
    """Reads the rows, each part's in one batched read."""
    del copy
    out = np.empty(self.shape, np.uint8)
    parts = self._part_of(self.rows)
    for part in np.unique(parts):
      where = np.flatnonzero(parts == part)
      keys = [int(r) for r in self.rows[where] - self._starts[part]]
      records = self._read_records(self._source(part), keys)
      for i, key, record in zip(where, keys, records):
        out[i] = self._decode(record, key + int(self._starts[part]))
    return out if dtype is None else out.astype(dtype)

  def concatenate(self, parts: list["IndexedImages"]) -> "IndexedImages":
    if any((p.parts, p.counts) != (self.parts, self.counts) for p in parts):
      raise ValueError("Images of different sources cannot be joined.")
    return type(self)(self.parts, self.counts, np.concatenate([p.rows for p in parts]),
                      self.image_shape, self._opened)

  def _part_of(self, rows: np.ndarray) -> np.ndarray:
    return np.searchsorted(self._starts, rows, side="right") - 1

  def _source(self, part: int):
    if part not in self._opened:
      self._opened[part] = self._open_part(self.parts[part])
    return self._opened[part]

  def __getstate__(self):
    return {**self.__dict__, "_opened": {}}
