"""Datasets: loaders (local files, TFDS, generators, your arrays) and the on-device pipeline."""

from jaxlearn.data.custom import from_arrays, from_source
from jaxlearn.data.datasets import DATASETS, load_raw
from jaxlearn.data.pipeline import Splits, input_dims, make_splits
from jaxlearn.data.sources import RawData
