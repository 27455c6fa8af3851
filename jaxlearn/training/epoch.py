"""Running one training epoch in compiled chunks of steps, and evaluating a split."""

import dataclasses
import time
from typing import Callable

import jax
import numpy as np

from jaxlearn.training import metric_values, nonfinite, reporting
from jaxlearn.training.interrupts import StopRequest


@dataclasses.dataclass
class EpochRunner:
  """What every epoch of a run shares: the compiled chunk, its sizes and where results go."""
  train_chunk: Callable  # from compiled.compile_steps
  steps_per_epoch: int
  num_epochs: int
  batch_size: int
  steps_per_call: int = 16
  log_every_steps: int = 100
  progress_bar: bool = True
  reporter: reporting.Reporter | None = None
  stop: StopRequest = dataclasses.field(default_factory=StopRequest)
  watch: nonfinite.Watch = dataclasses.field(default_factory=nonfinite.Watch)
  # The merged metrics of the steps run so far in an epoch that was stopped part-way.
  partial: object = None

  @classmethod
  def from_config(cls, config, train_chunk, steps_per_epoch: int, reporter=None,
                  stop=None, steps_per_call: int | None = None) -> "EpochRunner":
    return cls(train_chunk, steps_per_epoch, config.num_epochs, config.batch_size,
               steps_per_call or config.steps_per_call, config.log_every_steps,
               config.progress_bar, reporter,
               stop or StopRequest(), nonfinite.Watch.from_config(config))

  def train(self, state, batches, epoch: int, first_step: int = 0, carried: list | None = None):
    """Runs the epoch's steps from `first_step`; returns (state, the epoch's train metrics).

    `batches` is the epoch's from `jaxlearn.data.pipeline` (`chunk(first, count)`
    gives what the compiled chunk of those steps takes).
    `carried` holds the metrics of the epoch's steps before `first_step` (see
    `metric_values.to_record`), so that a resumed epoch's metrics cover all of
    it. Between chunks nothing waits for the device; the host reads results
    back once per logging window (and when a stop is requested), and a stopped
    epoch leaves its metrics so far in `self.partial`.
    """
    epoch_metrics, window = None, []
    window_start, window_steps, step = time.time(), 0, first_step
    shown = self.progress_bar and (self.reporter is None or self.reporter.writes)
    bar = reporting.progress_bar(shown, self.steps_per_epoch, first_step,
                                 f"epoch {epoch + 1}/{self.num_epochs}")
    while step < self.steps_per_epoch:
      count = min(self.steps_per_call, self.log_every_steps - window_steps,
                  self.steps_per_epoch - step)
      chunk = batches.chunk(step, count)
      state, metrics, health = self.train_chunk(state, chunk, step, count)
      window.append((metrics, health, count))
      step, window_steps = step + count, window_steps + count
      bar.update(count)
      if (window_steps == self.log_every_steps or step == self.steps_per_epoch
          or self.stop.requested):
        merged = self._close_window(window, int(state.step), window_steps, window_start, bar,
                                    batches.pop_wait_seconds())
        if epoch_metrics is None and carried:
          epoch_metrics = metric_values.from_record(carried, merged)
        epoch_metrics = (merged if epoch_metrics is None
                         else metric_values.merge_two(epoch_metrics, merged))
        window, window_start, window_steps = [], time.time(), 0
      if self.stop.requested:
        break
    bar.close()
    self.partial = epoch_metrics if step < self.steps_per_epoch else None
    return state, metric_values.scalars(epoch_metrics)

  def _close_window(self, window, last_step: int, steps: int, started: float, bar,
                    waited: float | None = None):
    """Checks the window's step health, reports its metrics; returns them merged.

    `waited`: the seconds the loop spent waiting for streamed input, logged as
    `input_wait`, a share of the window's wall time (0: the input kept up).
    """
    merged = metric_values.merge([m for m, _, _ in window])
    fetched = jax.device_get([h for _, h, _ in window])  # One read-back per window.
    health = {k: np.concatenate([h[k][:n] for h, (_, _, n) in zip(fetched, window)])
              for k in fetched[0]}
    self.watch.check(health, last_step)
    scalars = metric_values.scalars(merged)
    elapsed = time.time() - started
    scalars["images_per_second"] = steps * self.batch_size / elapsed
    if waited is not None:
      scalars["input_wait"] = waited / elapsed
    if self.reporter is not None:
      self.reporter.write(last_step, "train", scalars, echo=bool(bar.disable))
    bar.set_postfix(loss=f"{scalars['loss']:.4f}", acc=f"{scalars.get('accuracy', 0):.4f}",
                    img_s=f"{scalars['images_per_second']:.0f}")
    return merged


def evaluate(eval_batch, state, batches) -> dict[str, float]:
  """Metrics over every (unpadded) example of a split of eval batches."""
  num_batches = jax.tree.leaves(batches)[0].shape[0]
  return metric_values.scalars(
      metric_values.merge([eval_batch(state, batches, i) for i in range(num_batches)]))
