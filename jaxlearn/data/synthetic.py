"""Generated datasets with a known answer: a linear map, and two interleaved moons.

Both draw from config.seed, so a run is reproducible, and have no test split of
their own (the pipeline cuts train:val:test from them).
"""

import numpy as np

from jaxlearn.data.sources import RawData
from jaxlearn.errors import ConfigError


def load_linear(data_config, seed: int = 0) -> RawData:
  """x ~ N(0, 1) with len(true_weights) features; y = x . true_weights + true_bias + noise."""
  weights = np.asarray(data_config.true_weights, np.float64)
  if weights.ndim != 1 or weights.size == 0:
    raise ConfigError(f"config.data.true_weights={data_config.true_weights}; give one weight "
                      "per feature, e.g. (2.0, -3.4).")
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(_num_examples(data_config), weights.size))
  y = x @ weights + data_config.true_bias + rng.normal(scale=data_config.noise_std, size=len(x))
  return RawData("features", (x.astype(np.float32), y.astype(np.float32)))


def load_two_moons(data_config, seed: int = 0) -> RawData:
  """Two interleaved half circles in 2-D, labelled 0 and 1, with Gaussian noise."""
  n = _num_examples(data_config)
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  angle = rng.uniform(0, np.pi, n)
  x = np.where(labels == 0, np.cos(angle), 1 - np.cos(angle))
  y = np.where(labels == 0, np.sin(angle), 0.5 - np.sin(angle))
  points = np.stack([x, y], 1) + rng.normal(scale=data_config.noise_std, size=(n, 2))
  return RawData("features", (points.astype(np.float32), labels.astype(np.int32)))


def _num_examples(data_config) -> int:
  if data_config.num_examples < 10:
    raise ConfigError(f"config.data.num_examples={data_config.num_examples}; generate at least "
                      "10 so that train, val and test are not empty.")
  return data_config.num_examples
