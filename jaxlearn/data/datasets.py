"""The dataset registry: `config.data.name` -> the loader that reads it."""

import functools

import numpy as np

from jaxlearn.data import array_record, folders, images, synthetic, tabular, text
from jaxlearn.data.sources import RawData
from jaxlearn.errors import ConfigError

DATASETS = {
    "mnist": images.load_idx_dataset,
    "fashion_mnist": images.load_idx_dataset,
    "cifar10": images.load_cifar10,
    "sst2": text.load_sst2,
    "imdb": text.load_imdb,
    "csv": tabular.load_csv,
    "image_folder": folders.load_image_folder,
    "array_record": array_record.load_records,
    "synthetic_linear": synthetic.load_linear,
    "two_moons": synthetic.load_two_moons,
}

# Generators draw from the run's seed.
_SEEDED = (synthetic.load_linear, synthetic.load_two_moons)


def load_raw(data_config, seed: int = 0) -> RawData:
  """Reads `data_config.name` as a RawData (see jaxlearn.data.sources)."""
  if data_config.name not in DATASETS:
    raise ConfigError(f"Unknown dataset {data_config.name!r} in config.data.name; "
                      f"choose one of {sorted(DATASETS)}.")
  loader = DATASETS[data_config.name]
  if loader in _SEEDED:
    loader = functools.partial(loader, seed=seed)
  raw = loader(data_config)
  positive = data_config.get("positive_class", -1)
  return raw if positive < 0 else one_vs_rest(raw, positive, data_config.name)


def one_vs_rest(raw: RawData, positive: int, name: str) -> RawData:
  """`raw` with class `positive` as 1 and every other class as 0 (a binary task's labels)."""
  labels = np.concatenate([raw.train[1]] + ([raw.test[1]] if raw.test else []))
  if labels.dtype.kind not in "iu" or positive > labels.max():
    raise ConfigError(f"config.data.positive_class={positive}, but {name}'s labels "
                      + (f"run 0..{labels.max()}" if labels.dtype.kind in "iu" else
                         f"are {labels.dtype}, not class ids")
                      + "; use one of its class ids, or -1 (off).")
  relabel = lambda split: None if split is None else (split[0],
                                                      (split[1] == positive).astype(np.int32))
  shown = raw.class_names[positive] if raw.class_names else f"class {positive}"
  return raw._replace(train=relabel(raw.train), test=relabel(raw.test),
                      class_names=(f"not {shown}", shown))
