"""Datasets: loaders (local files, TFDS, generators, your arrays) and the pipelines.

Names are imported on first use, so that Grain's worker processes, which
import only the modules their data sources live in, do not load the training
modules (flax, optax, the pipeline's compiled functions).
"""

import importlib

_EXPORTS = {
    "from_arrays": "jaxlearn.data.custom",
    "from_source": "jaxlearn.data.custom",
    "DATASETS": "jaxlearn.data.datasets",
    "load_raw": "jaxlearn.data.datasets",
    "Splits": "jaxlearn.data.pipeline",
    "input_dims": "jaxlearn.data.pipeline",
    "make_splits": "jaxlearn.data.pipeline",
    "RawData": "jaxlearn.data.sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'jaxlearn.data' has no attribute {name!r}")
