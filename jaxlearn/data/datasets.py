"""The dataset registry: `config.data.name` -> the loader that reads it."""

import functools

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
  return loader(data_config)
