"""From raw arrays to normalised splits that live on the accelerator.

Small datasets are copied to the devices once; every epoch is shuffled and cut
into batches there by one compiled function, so the training loop never moves
data from the host.
"""

import functools
from typing import NamedTuple

import jax
import numpy as np

from jaxlearn import parallel
from jaxlearn.errors import ConfigError

Split = dict[str, np.ndarray]  # {"inputs": ..., "targets": ...}


class Splits(NamedTuple):
  train: Split
  val: Split
  test: Split


def make_splits(raw, data_config, seed: int) -> Splits:
  """Shuffles (from `seed`), splits and normalises the raw uint8 arrays."""
  rng = np.random.default_rng(seed)
  if data_config.split_ratios:
    train, val, test = _split_by_ratios(raw, data_config.split_ratios, rng)
  else:
    train, val = _hold_out(raw["train"], data_config.val_fraction, rng)
    test = raw["test"]
  if data_config.max_train_examples:
    train = tuple(a[:data_config.max_train_examples] for a in train)
  if len(val[0]) == 0:
    raise ConfigError("The validation split is empty, but the best checkpoint is chosen on it; "
                      "set --config.data.val_fraction to a value in (0, 1).")
  normalise = functools.partial(normalise_images, mean=data_config.mean, std=data_config.std)
  return Splits(*({"inputs": normalise(x), "targets": y} for x, y in (train, val, test)))


def normalise_images(images: np.ndarray, mean, std) -> np.ndarray:
  """uint8 pixels -> float32 with the given per-channel mean/std (on [0, 1] scale)."""
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  if mean.shape[-1] not in (1, images.shape[-1]) or std.shape != mean.shape:
    raise ConfigError(f"config.data.mean {tuple(mean)} / std {tuple(std)} must have one value "
                      f"per image channel ({images.shape[-1]}).")
  return (images.astype(np.float32) / 255.0 - mean) / std


def _hold_out(split, fraction: float, rng):
  if not 0.0 <= fraction < 1.0:
    raise ConfigError(f"config.data.val_fraction={fraction} must be in [0, 1).")
  order = rng.permutation(len(split[0]))
  num_val = int(round(fraction * len(order)))
  val_idx, train_idx = order[:num_val], order[num_val:]
  return tuple(a[train_idx] for a in split), tuple(a[val_idx] for a in split)


def _split_by_ratios(raw, ratios: str, rng):
  try:
    parts = [float(r) for r in ratios.split(":")]
  except ValueError:
    parts = []
  if len(parts) != 3 or min(parts) < 0 or parts[0] <= 0:
    raise ConfigError(f"config.data.split_ratios={ratios!r} must be 'train:val:test', "
                      "e.g. '7:2:1'.")
  pooled = tuple(np.concatenate(a) for a in zip(*raw.values()))
  order = rng.permutation(len(pooled[0]))
  ends = np.cumsum(parts)[:2] / sum(parts) * len(order)
  return tuple(tuple(a[idx] for a in pooled) for idx in np.split(order, ends.round().astype(int)))


def to_device(split: Split, mesh) -> dict:
  """The split's arrays, replicated on every device (the batcher picks each batch there)."""
  return jax.device_put(split, parallel.replicated(mesh))


def make_epoch_batcher(batch_size: int, mesh):
  """Returns `batcher(split_arrays, key) -> batches` shaped (steps, batch_size, ...).

  Shuffles with `key` and drops the last incomplete batch, like PyTorch's
  `DataLoader(shuffle=True, drop_last=True)`; each batch comes out split over
  the mesh's `data` axis.
  """

  @functools.partial(jax.jit, out_shardings=parallel.stacked_batch_sharding(mesh))
  def batcher(arrays, key):
    n = jax.tree.leaves(arrays)[0].shape[0]
    steps = n // batch_size
    order = jax.random.permutation(key, n)[:steps * batch_size]
    return jax.tree.map(lambda a: a[order].reshape(steps, batch_size, *a.shape[1:]), arrays)

  return batcher


def make_eval_batches(split: Split, batch_size: int, mesh) -> dict:
  """The whole split as (steps, batch_size, ...) batches with a 0/1 `mask` for padding."""
  n = len(split["targets"])
  steps = -(-n // batch_size)
  pad = steps * batch_size - n

  def pad_and_stack(a):
    a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)])
    return a.reshape(steps, batch_size, *a.shape[1:])

  batches = {k: pad_and_stack(v) for k, v in split.items()}
  batches["mask"] = pad_and_stack(np.ones(n, np.float32))
  return jax.device_put(batches, parallel.stacked_batch_sharding(mesh))


def epoch_key(data_key: jax.Array, epoch: int) -> jax.Array:
  """The shuffling key of `epoch`: the same on every rerun, so resumes see the same order."""
  return jax.random.fold_in(data_key, epoch)


def num_train_steps(num_examples: int, batch_size: int) -> int:
  steps = num_examples // batch_size
  if steps == 0:
    raise ConfigError(f"config.batch_size={batch_size} is larger than the {num_examples} training"
                      " examples; lower the batch size.")
  return steps


