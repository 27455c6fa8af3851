"""The learning-rate range test: a short run with the rate rising exponentially, and a rate to use.

Smith's test, as fastai's and Lightning's `lr_find`: `steps` optimizer steps of
the config's model, optimizer and data (its seed's split, shuffled with its
seed, its augmentation), the rate going from `min_lr` to `max_lr` geometrically; the loss
of each batch is smoothed (an exponential average, bias-corrected) and the
test stops once the smoothed loss is `stop_factor` times its lowest or not
finite. The suggestion is the rate where the smoothed loss falls fastest
against log(rate) before its lowest point — the steepest descent — skipping the
first tenth of the steps, where the average is still settling.

Nothing is written but what the caller asks for (`write_csv`, `plot`): no
workdir, no checkpoint, nothing a later run would pick up.
"""

import copy
import csv
import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxlearn import config as config_lib, data
from jaxlearn.core import optim
from jaxlearn.core.step import train_step
from jaxlearn.data import augment as augmentation
from jaxlearn.errors import ConfigError
from jaxlearn.runs import build


@dataclasses.dataclass(frozen=True)
class RangeTest:
  """What the test measured and the rate it suggests, with how that rate was chosen."""
  rates: np.ndarray  # the rate of each step taken
  losses: np.ndarray  # each step's batch loss
  smoothed: np.ndarray  # the exponential average of `losses`
  suggestion: float
  reason: str  # how `suggestion` was chosen, in words
  stopped: str  # why the test ended


def find_learning_rate(config, *, min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 100,
                       smoothing: float = 0.9, stop_factor: float = 4.0,
                       raw: data.RawData | None = None) -> RangeTest:
  """Runs the range test on `config` (see the module docstring); `raw` as train_and_evaluate's."""
  if not 0 < min_lr < max_lr:
    raise ConfigError(f"The range test's rates must rise: min_lr={min_lr:g}, max_lr={max_lr:g}; "
                      "give 0 < min_lr < max_lr, e.g. 1e-7 and 10.")
  if steps < 10:
    raise ConfigError(f"steps={steps}: the range test needs at least 10 steps to find a slope; "
                      "100 is usual.")
  config_lib.validate(config, jax.device_count())
  raw = raw if raw is not None else data.load_raw(config.data, config.seed)
  splits = data.make_splits(raw, config.data, config.seed)
  task, splits = build.prepare_task(config, splits)
  state = build.checked_state(_at_rate_one(config), splits, task, steps)
  step = jax.jit(functools.partial(train_step, task=task,
                                   augment=augmentation.make_augment(config.augment)),
                 donate_argnums=0)
  rates = min_lr * (max_lr / min_lr) ** (np.arange(steps) / (steps - 1))
  losses, smoothed, average, stopped = [], [], 0.0, f"ran all {steps} steps"
  for i, (rate, batch) in enumerate(zip(rates, _batches(splits.train, config, steps))):
    scale = optim.hyperparams(state.opt_state)["lr_scale"]
    state = state.replace(opt_state=optim.with_hyperparams(
        state.opt_state, lr_scale=jnp.asarray(rate, scale.dtype)))
    state, metrics = step(state, batch)
    loss = float(metrics.compute()["loss"])
    average = smoothing * average + (1 - smoothing) * loss
    losses.append(loss)
    smoothed.append(average / (1 - smoothing ** (i + 1)))
    if not np.isfinite(smoothed[-1]) or smoothed[-1] > stop_factor * min(smoothed):
      stopped = (f"the loss diverged at rate {rate:.3g} (step {i + 1}): "
                 + ("not finite" if not np.isfinite(smoothed[-1]) else
                    f"{smoothed[-1]:.3g}, over {stop_factor:g}x its lowest {min(smoothed):.3g}"))
      break
  rates, losses, smoothed = rates[:len(losses)], np.asarray(losses), np.asarray(smoothed)
  suggestion, reason = suggest(rates, smoothed)
  return RangeTest(rates, losses, smoothed, suggestion, reason, stopped)


def suggest(rates: np.ndarray, smoothed: np.ndarray) -> tuple[float, str]:
  """The steepest descent of `smoothed` against log10(rate) before its lowest point.

  >>> rates = np.logspace(-5, 0, 51)
  >>> loss = 1 / (1 + np.exp(4 * (np.log10(rates) + 2.5)))  # falls fastest at 10**-2.5
  >>> loss[45:] += np.linspace(0, 5, 6)  # and diverges at the end
  >>> round(float(np.log10(suggest(rates, loss)[0])), 2)
  -2.5
  """
  finite = np.isfinite(smoothed)
  lowest = int(np.argmin(np.where(finite, smoothed, np.inf)))
  start = max(1, len(rates) // 10)
  if lowest - start < 2:
    rate = float(rates[lowest]) / 10
    return rate, (f"the loss never fell for long (lowest {smoothed[lowest]:.3g} at rate "
                  f"{rates[lowest]:.3g}, step {lowest + 1}), so a tenth of that rate; try a "
                  "lower --min_lr or more steps")
  slopes = np.gradient(smoothed[:lowest + 1], np.log10(rates[:lowest + 1]))
  i = start + int(np.argmin(slopes[start:]))
  return float(rates[i]), (f"the steepest fall of the smoothed loss ({slopes[i]:.3g} per "
                           f"tenfold rate, at step {i + 1}) before its lowest point "
                           f"({smoothed[lowest]:.3g} at rate {rates[lowest]:.3g})")


def _at_rate_one(config):
  """`config` with a constant base rate of 1: each step's rate is then its `lr_scale`."""
  probe = copy.deepcopy(config)
  probe.optimizer.learning_rate = 1.0
  probe.schedule.name = "constant"
  probe.schedule.warmup_epochs = 0.0
  return probe


def _batches(train: dict, config, count: int):
  """`count` training batches, shuffled with the config's seed (epochs repeat if needed)."""
  size = config.batch_size
  rng = np.random.default_rng(config.seed)
  n = len(train["targets"])
  if n < size:
    raise ConfigError(f"The train split has {n} examples, fewer than config.batch_size={size}; "
                      "lower the batch size for the range test.")
  given = 0
  while given < count:
    order = rng.permutation(n)
    for first in range(0, n - size + 1, size):
      if given == count:
        return
      index = np.sort(order[first:first + size])
      yield {k: np.asarray(v[index]) for k, v in train.items()}
      given += 1


def write_csv(test: RangeTest, path: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["step", "learning_rate", "loss", "smoothed_loss"])
    for i, (rate, loss, smooth) in enumerate(zip(test.rates, test.losses, test.smoothed)):
      writer.writerow([i + 1, f"{rate:.6g}", f"{loss:.6g}", f"{smooth:.6g}"])
  os.replace(tmp, path)


def plot(test: RangeTest, path: str) -> None:
  """The loss against the rate (log scale), the suggestion marked."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  ax.plot(test.rates, test.losses, color="0.75", linewidth=1, label="batch loss")
  ax.plot(test.rates, test.smoothed, color="C0", label="smoothed")
  at = int(np.argmin(np.abs(test.rates - test.suggestion)))
  ax.axvline(test.suggestion, color="C3", linestyle="--", linewidth=1)
  ax.plot([test.rates[at]], [test.smoothed[at]], "o", color="C3",
          label=f"suggested {test.suggestion:.2g}")
  finite = test.smoothed[np.isfinite(test.smoothed)]
  if finite.size:  # Up to where the test stopped the smoothed loss (the raw may spike past it).
    low, high = finite.min(), min(finite.max(), 4 * finite.min())
    ax.set_ylim(low - 0.1 * (high - low), high + 0.05 * (high - low))
  ax.set_xscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss")
  ax.set_title("Learning-rate range test")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
