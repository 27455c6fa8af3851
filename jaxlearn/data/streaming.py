"""Training batches streamed with Grain: `config.data.pipeline = "grain"`.

For data that should not (or cannot) sit in memory, such as an image folder
larger than RAM. One Grain pipeline serves the whole run: a random-access
source of its batches (`Batches`: batch t is step t % steps of epoch t // steps,
drawn from a permutation of this process's shard of the examples; every process
reads only its own shard), made (files decoded, pixels normalised) in
`data.workers` worker processes a few batches ahead, and assembled into the
global batch with `jax.make_array_from_process_local_data`. The loop asks for
a chunk of batches while the devices still run the previous one, so reading
overlaps training; the time it did wait is logged as `input_wait` (the share
of the window's wall time). The stream's position is saved with a mid-epoch
checkpoint, so a resumed run sees exactly the batches it would have seen.

The worker processes unpickle `Batches` and `Normalised`, so this module and
what it imports stay free of jaxlearn's training modules (flax, optax).
"""

import gc
import time

import numpy as np

from jaxlearn.data import images

READ_THREADS = 2  # per worker process
# Each worker prepares up to 16 batches ahead of the one asked for, and at most this many
# bytes of them, so that the memory a run holds does not grow with the images' size.
READ_AHEAD_BATCHES = 16
READ_AHEAD_BYTES = 64 << 20
CHUNK_BYTES = 64 << 20


class Normalised:
  """Images normalised when indexed (uint8 -> float32 by mean/std): the streamed split.

  Wraps a uint8 array or `folders.ImageFiles`; indexing with an integer gives
  one (H, W, C) image, with a slice or index array a batch of them.
  """
  dtype = np.dtype(np.float32)
  ndim = 4

  def __init__(self, pixels, mean, std):
    self.pixels, self.mean, self.std = pixels, tuple(mean), tuple(std)

  @property
  def shape(self) -> tuple:
    return tuple(self.pixels.shape)

  def __len__(self) -> int:
    return len(self.pixels)

  def __getitem__(self, index):
    if isinstance(index, (int, np.integer)):
      return images.normalise_images(np.asarray(self.pixels[index])[None], self.mean,
                                     self.std)[0]
    return images.normalise_images(np.asarray(self.pixels[index]), self.mean, self.std)


class Batches:
  """Batch t of the run (epoch t // steps, step t % steps) of this process's shard, by index.

  The Grain source of the whole run's batches: each epoch's order is a
  permutation of the shard drawn from (seed, epoch), so any batch can be made
  anywhere (in any worker, after any resume) from its index alone. Picklable
  and JAX-free.
  """

  def __init__(self, split: dict, *, local_batch: int, steps: int, epochs: int, seed: int,
               shard: slice):
    self.inputs, self.targets = split["inputs"], np.asarray(split["targets"])
    self.local_batch, self.steps, self.epochs, self.seed = local_batch, steps, epochs, seed
    self.shard = np.arange(len(self.targets))[shard]
    self._orders = {}

  def __len__(self) -> int:
    return self.epochs * self.steps

  def __getitem__(self, t: int) -> dict:
    epoch, step = divmod(int(t), self.steps)
    if epoch not in self._orders:
      self._orders = {epoch: np.random.default_rng((self.seed, epoch)).permutation(self.shard)}
    rows = np.sort(self._orders[epoch][step * self.local_batch:(step + 1) * self.local_batch])
    # Sorted: files are then read in folder order; the batch's composition is what is random.
    return {"inputs": np.asarray(self.inputs[rows]), "targets": self.targets[rows]}


def read_ahead(inputs, local_batch: int) -> int:
  """Batches a worker prepares ahead: READ_AHEAD_BATCHES, fewer when they are big."""
  return int(np.clip(READ_AHEAD_BYTES // _batch_bytes(inputs, local_batch), 1,
                     READ_AHEAD_BATCHES))


def steps_per_call(wanted: int, inputs, local_batch: int) -> int:
  """Steps in one compiled call: `wanted`, fewer when their batches would pass CHUNK_BYTES
  (a call's batches are on the host and the devices at once, and the next call's too)."""
  return int(np.clip(CHUNK_BYTES // _batch_bytes(inputs, local_batch), 1, wanted))


def _batch_bytes(inputs, local_batch: int) -> int:
  return max(1, local_batch * int(np.prod(inputs.shape[1:])) * np.dtype(inputs.dtype).itemsize)


class Stream:
  """The run's training batches from batch `start` on: `take(count)` gives the next chunk.

  `state()` is the position after the batches taken (JSON), saved with a
  mid-epoch checkpoint; a Stream started there continues with the same batches.
  """

  def __init__(self, split: dict, *, batch_size: int, seed: int, epochs: int, workers: int,
               steps_per_call: int, sharding, start: int = 0):
    try:
      import grain  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      from jaxlearn.errors import ConfigError  # pylint: disable=import-outside-toplevel
      raise ConfigError("config.data.pipeline='grain' needs Grain: pip install "
                        "'jaxlearn[grain]'.") from e
    import jax  # pylint: disable=import-outside-toplevel
    self._jax, self._sharding, self._steps_per_call = jax, sharding, steps_per_call
    processes, index = jax.process_count(), jax.process_index()
    local_batch, shard = batch_size // processes, len(split["targets"]) // processes
    source = Batches(split, local_batch=local_batch, steps=shard // local_batch, epochs=epochs,
                     seed=seed, shard=slice(index * shard, (index + 1) * shard))
    iterable = grain.MapDataset.source(source).slice(slice(start, None)).to_iter_dataset(
        grain.ReadOptions(num_threads=READ_THREADS,
                          prefetch_buffer_size=read_ahead(split["inputs"], local_batch)))
    if workers:
      from absl import flags  # pylint: disable=import-outside-toplevel
      if not flags.FLAGS.is_parsed():  # Grain's workers read its absl flags (defaults here).
        flags.FLAGS.mark_as_parsed()
      iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    self._iterator = iter(iterable)
    self._global_batch, self.position, self.wait_seconds = batch_size, start, 0.0

  def take(self, count: int) -> dict:
    """The next `count` batches, stacked and padded to steps_per_call, on the devices."""
    started = time.perf_counter()
    batches = [next(self._iterator) for _ in range(count)]
    self.wait_seconds += time.perf_counter() - started
    self.position += count
    stacked = {}
    for key in batches[0]:
      # Always steps_per_call batches, one program for every chunk length: the zero padding's
      # steps are never run.
      first = np.asarray(batches[0][key])
      stacked[key] = np.zeros((self._steps_per_call, *first.shape), first.dtype)
      for i, batch in enumerate(batches):
        stacked[key][i] = batch[key]
    return {k: self._jax.make_array_from_process_local_data(
        self._sharding, v, (self._steps_per_call, self._global_batch, *v.shape[2:]))
            for k, v in stacked.items()}

  def state(self) -> dict:
    return {"batch": self.position}

  def pop_wait_seconds(self) -> float:
    waited, self.wait_seconds = self.wait_seconds, 0.0
    return waited

  def close(self) -> None:
    """Stops the workers and frees the shared memory of the batches they made."""
    close = getattr(self._iterator, "close", None)
    if close is not None:
      close()
    self._iterator = None
    gc.collect()  # The batches read ahead free their shared memory when collected.
    _wait_for_shared_memory_release()


def _wait_for_shared_memory_release() -> None:
  """Grain unlinks a used batch's shared memory in a background thread: waits for it.

  Else a run that ends soon after prints Python's warning of "leaked
  shared_memory objects" at exit (they are cleaned up, but the warning alarms).
  """
  try:
    from grain._src.python.ipc import shared_memory_array  # pylint: disable=import-outside-toplevel
  except ImportError:  # Another Grain layout: nothing to wait for that we know of.
    return
  pool = getattr(shared_memory_array.SharedMemoryArray, "_del_thread_pool", None)
  if pool is not None:
    pool.apply(int)  # One thread, first in first out: done when the earlier unlinks are.
