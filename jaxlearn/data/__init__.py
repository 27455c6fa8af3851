"""Datasets: raw sources (local files, TFDS) and the on-device pipeline."""

from jaxlearn.data.pipeline import Splits, make_splits
from jaxlearn.data.sources import load_raw
