"""From raw data to model-ready splits, and the training batches the loop takes.

`train_batches(config, split, mesh)` is the one place the two pipelines part:
`MemoryBatches` copies a small split to the devices once, every epoch is a
shuffled order of its indices, and each compiled step gathers its batch there,
so the loop never moves data from the host; `StreamedBatches` streams it with
Grain (`jaxlearn.data.streaming`). Both offer the loop the same interface:
`steps_per_epoch`, `steps_per_call`, `host_batches` (how the chunk is
compiled), `epoch(i, position)` (the epoch's batches, with `chunk(first,
count)`), `state()` (the position to save mid-epoch) and `close()`.
"""

import functools
from typing import NamedTuple

import jax
import numpy as np

from jaxlearn.core import parallel
from jaxlearn.data import folders, images, indexed, streaming, tabular, text
from jaxlearn.data.sources import RawData
from jaxlearn.errors import ConfigError

Split = dict[str, np.ndarray]  # {"inputs": ..., "targets": ...}


# Images read when indexed (an image folder, ArrayRecord, TFDS data sources) fit mean/std
# on this many.
STATS_IMAGES = 2048
LAZY_IMAGES = (folders.ImageFiles, indexed.IndexedImages)
# How a dataset without a test split of its own is cut, unless config.data.split_ratios says.
DEFAULT_RATIOS = "7:2:1"


class Splits(NamedTuple):
  """Model-ready train/val/test arrays, and what was fitted on train to make them.

  `preprocessing` (JSON-able) is what inference needs to prepare new inputs
  the same way (image mean/std, the text vocabulary, or the table encoder) and
  to name its outputs (`class_names`, where the dataset has them).
  """
  train: Split
  val: Split
  test: Split
  preprocessing: dict


def make_splits(raw: RawData, data_config, seed: int) -> Splits:
  """Shuffles (from `seed`) and splits `raw`, then fits preprocessing on train only.

  The preprocessing also records the dataset's class names and how one
  example is stored (`input`: kind, shape, dtype) for inference and export.
  """
  train, val, test = split_raw(raw, data_config, seed)
  if len(val[0]) == 0:
    raise ConfigError("The validation split is empty, but the best checkpoint is chosen on it; "
                      "set --config.data.val_fraction to a value in (0, 1).")
  fitted = fit_preprocessing(raw, train[0], data_config)
  if raw.class_names:
    fitted["class_names"] = list(raw.class_names)
  prepare = functools.partial(preprocess, raw.kind, fitted)
  train_inputs = (streaming.Normalised(train[0], fitted["mean"], fitted["std"])
                  if streams(raw, data_config) else prepare(train[0]))
  splits = Splits({"inputs": train_inputs, "targets": train[1]},
                  *({"inputs": prepare(x), "targets": y} for x, y in (val, test)), fitted)
  stored = to_stored(raw.kind, fitted, train[0][:1])
  fitted["input"] = {"kind": raw.kind, "shape": list(stored.shape[1:]),
                     "dtype": str(stored.dtype)}
  return splits


def streams(raw: RawData, data_config) -> bool:
  """Whether the training split stays where it is, normalised as Grain reads it."""
  return data_config.get("pipeline", "memory") == "grain" and raw.kind == "image"


def split_raw(raw: RawData, data_config, seed: int) -> tuple[tuple, tuple, tuple]:
  """The (inputs, targets) of train, val and test as read, cut the same way for a seed."""
  rng = np.random.default_rng(seed)
  if data_config.split_ratios or raw.test is None:
    train, val, test = _split_by_ratios(raw, data_config.split_ratios or DEFAULT_RATIOS, rng)
  else:
    train, val = _hold_out(raw.train, data_config.val_fraction, rng)
    test = raw.test
  if data_config.max_train_examples:
    train = tuple(a[:data_config.max_train_examples] for a in train)
  return train, val, test


def fit_preprocessing(raw: RawData, train_inputs, data_config) -> dict:
  """What the inputs' preparation learns, from the training split alone."""
  if raw.kind == "image":
    mean, std = data_config.mean, data_config.std
    if not mean:  # Fitted, so no statistic of val/test leaks into training.
      mean, std = images.channel_stats(train_inputs[:STATS_IMAGES] if isinstance(
          train_inputs, LAZY_IMAGES) else train_inputs)
    return {"mean": list(mean), "std": list(std)}
  if raw.kind == "text":
    vocabulary = text.build_vocabulary(train_inputs, data_config.vocab_size, data_config.min_count)
    return {"vocabulary": vocabulary, "max_length": data_config.max_length}
  if raw.kind == "table":
    return {"columns": tabular.fit_table_encoder(train_inputs, raw.columns)}
  return {}


def preprocess(kind: str, fitted: dict, inputs) -> np.ndarray:
  """Raw inputs -> the arrays a model takes, by what `fit_preprocessing` learnt."""
  stored = to_stored(kind, fitted, inputs)
  if kind == "image":
    return images.normalise_images(stored, fitted["mean"], fitted["std"])
  return stored


def to_stored(kind: str, fitted: dict, inputs) -> np.ndarray:
  """Raw inputs -> arrays as an exported model takes them: all but image normalisation.

  uint8 pixels, int32 token ids, float32 table features, or the features as given.
  """
  if kind == "text":
    return text.encode(inputs, fitted["vocabulary"], fitted["max_length"])
  if kind == "table":
    return tabular.encode_table(inputs, fitted["columns"])
  return np.asarray(inputs)


def input_dims(splits: Splits) -> dict[str, int]:
  """Sizes a model can take from the data: features, channels, vocabulary, sequence length,
  and the padding token's id."""
  inputs = splits.train["inputs"]
  dims = {"in_features": int(np.prod(inputs.shape[1:]))}
  if inputs.ndim == 4:
    dims["in_channels"] = int(inputs.shape[-1])
    dims["image_size"] = tuple(int(d) for d in inputs.shape[1:3])
  if "vocabulary" in splits.preprocessing:
    dims["vocab_size"] = len(splits.preprocessing["vocabulary"]) + 2  # + padding, unknown
    dims["pad_id"] = text.PAD
    dims["max_length"] = int(inputs.shape[1])
  return dims


def _hold_out(split, fraction: float, rng):
  if not 0.0 <= fraction < 1.0:
    raise ConfigError(f"config.data.val_fraction={fraction} must be in [0, 1).")
  order = rng.permutation(len(split[0]))
  num_val = int(round(fraction * len(order)))
  val_idx, train_idx = order[:num_val], order[num_val:]
  return tuple(a[train_idx] for a in split), tuple(a[val_idx] for a in split)


def _concatenate(parts):
  """np.concatenate, or the parts' own (lazy images join their indices without reading)."""
  if len(parts) == 1:
    return parts[0]
  own = getattr(parts[0], "concatenate", None)
  return own(parts) if own is not None else np.concatenate(parts)


def _split_by_ratios(raw: RawData, ratios: str, rng):
  try:
    parts = [float(r) for r in ratios.split(":")]
  except ValueError:
    parts = []
  if len(parts) != 3 or min(parts) < 0 or parts[0] <= 0:
    raise ConfigError(f"config.data.split_ratios={ratios!r} must be 'train:val:test', "
                      "e.g. '7:2:1'.")
  pooled = tuple(_concatenate(a) for a in zip(*[s for s in (raw.train, raw.test) if s]))
  order = rng.permutation(len(pooled[0]))
  ends = np.cumsum(parts)[:2] / sum(parts) * len(order)
  return tuple(tuple(a[idx] for a in pooled) for idx in np.split(order, ends.round().astype(int)))


def to_device(split: Split, mesh) -> dict:
  """The split's arrays, replicated on every device (the batcher picks each batch there)."""
  return jax.device_put(split, parallel.replicated(mesh))


class Epoch(NamedTuple):
  """An epoch's batches: the split's arrays on the devices and their shuffled order."""
  arrays: dict
  order: jax.Array  # (steps, batch_size) example indices

  def chunk(self, first: int, count: int) -> "Epoch":
    """What the compiled chunk of steps first..first+count-1 takes: the whole epoch (it
    gathers its batches by index)."""
    del first, count
    return self

  def pop_wait_seconds(self) -> None:
    """The data is on the devices: the loop never waits for it."""
    return None

  def batch(self, i) -> dict:
    """Batch `i` (may be traced): gathered where the arrays are, inside the compiled step.

    Gathering each batch as it is needed reads the data once per epoch; a
    shuffled copy of the whole split would write and read it all again.
    """
    return jax.tree.map(lambda a: a[self.order[i]], self.arrays)


def make_epoch_batcher(batch_size: int, mesh):
  """Returns `batcher(split_arrays, seed, epoch) -> Epoch` of (steps, batch_size) indices.

  Shuffles by (`seed`, `epoch`), the same on every rerun so a resumed epoch sees
  the same order, and drops the last incomplete batch, like PyTorch's
  `DataLoader(shuffle=True, drop_last=True)`. The order is drawn on the host
  (NumPy's permutation is far quicker there than `jax.random.permutation` on a
  CPU); each batch's indices are split over the mesh's `data` axis, so each
  device gathers its part of the batch.
  """
  sharding = parallel.stacked_batch_sharding(mesh)

  def batcher(arrays, seed: int, epoch: int) -> Epoch:
    n = jax.tree.leaves(arrays)[0].shape[0]
    steps = n // batch_size
    order = np.random.default_rng((seed, epoch)).permutation(n)[:steps * batch_size]
    return Epoch(arrays, jax.device_put(order.reshape(steps, batch_size).astype(np.int32),
                                        sharding))

  return batcher


def make_eval_batches(split: Split, batch_size: int, mesh) -> dict:
  """The whole split as (steps, batch_size, ...) batches with 0/1 `weights` marking padding."""
  n = len(split["targets"])
  steps = -(-n // batch_size)
  pad = steps * batch_size - n

  def pad_and_stack(a):
    a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)])
    return a.reshape(steps, batch_size, *a.shape[1:])

  batches = {k: pad_and_stack(v) for k, v in split.items()}
  batches["weights"] = pad_and_stack(np.ones(n, np.float32))
  return jax.device_put(batches, parallel.stacked_batch_sharding(mesh))


def num_train_steps(num_examples: int, batch_size: int) -> int:
  steps = num_examples // batch_size
  if steps == 0:
    raise ConfigError(f"config.batch_size={batch_size} is larger than the {num_examples} training"
                      " examples; lower the batch size.")
  return steps


class MemoryBatches:
  """Training batches of a split held in the devices' memory (`config.data.pipeline="memory"`)."""
  host_batches = False

  def __init__(self, split: Split, *, batch_size: int, seed: int, mesh, steps_per_call: int):
    self.steps_per_epoch = num_train_steps(len(split["targets"]), batch_size)
    self.steps_per_call = steps_per_call
    self._split, self._seed, self._mesh = split, seed, mesh
    self._batcher = make_epoch_batcher(batch_size, mesh)
    self._arrays = None

  def epoch(self, epoch: int, position: dict | None = None) -> Epoch:
    """Epoch `epoch`'s order (the same on every rerun; `position` is not needed)."""
    del position
    if self._arrays is None:  # Copied once, when the first epoch starts.
      self._arrays = to_device(self._split, self._mesh)
    return self._batcher(self._arrays, self._seed, epoch)

  def state(self) -> None:
    """A stopped epoch resumes from its step count alone: no position to save."""
    return None

  def close(self) -> None:
    self._arrays = None


class StreamedBatches:
  """Training batches streamed with Grain (`config.data.pipeline="grain"`): one stream for
  the whole run, opened at the first epoch asked for (at `position` when resuming mid-epoch).

  Each process reads an equal shard of the examples and makes its part of a batch.
  """
  host_batches = True

  def __init__(self, split: Split, *, batch_size: int, seed: int, mesh, steps_per_call: int,
               epochs: int, workers: int):
    processes = jax.process_count()
    self.steps_per_epoch = num_train_steps(len(split["targets"]) // processes,
                                           batch_size // processes)
    self.steps_per_call = streaming.steps_per_call(steps_per_call, split["inputs"],
                                                   batch_size // processes)
    self._options = dict(batch_size=batch_size, seed=seed, epochs=epochs, workers=workers,
                         steps_per_call=self.steps_per_call,
                         sharding=parallel.stacked_batch_sharding(mesh))
    self._split, self._stream = split, None

  def epoch(self, epoch: int, position: dict | None = None) -> "StreamedBatches":
    if self._stream is None:
      start = position["batch"] if position else epoch * self.steps_per_epoch
      self._stream = streaming.Stream(self._split, start=start, **self._options)
    return self

  def chunk(self, first: int, count: int) -> dict:
    """The next `count` batches, stacked (the stream knows where it stands)."""
    del first
    return self._stream.take(count)

  def pop_wait_seconds(self) -> float:
    return self._stream.pop_wait_seconds()

  def state(self) -> dict:
    return self._stream.state()

  def close(self) -> None:
    if self._stream is not None:
      self._stream.close()


def train_batches(config, train_split: Split, mesh) -> MemoryBatches | StreamedBatches:
  """The training batches `config.data.pipeline` asks for."""
  options = dict(batch_size=config.batch_size, seed=config.seed, mesh=mesh,
                 steps_per_call=config.steps_per_call)
  if config.data.pipeline == "grain":
    return StreamedBatches(train_split, epochs=config.num_epochs, workers=config.data.workers,
                           **options)
  return MemoryBatches(train_split, **options)
