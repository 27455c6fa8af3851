"""Merging clu metric collections and reading them back as Python floats."""

import functools

import jax


def merge(collections: list):
  """The merge of a list of metric collections.

  Pairwise, by one compiled function, so lists of any length share one program
  (a single program for the whole list would compile once per length).
  """
  return functools.reduce(merge_two, collections)


@jax.jit
def merge_two(a, b):
  return a.merge(b)


@jax.jit
def _compute(collection) -> dict:
  return collection.compute()


def scalars(collection) -> dict[str, float]:
  """{metric name: value} as floats (one read-back from the device)."""
  return {k: float(v) for k, v in jax.device_get(_compute(collection)).items()}
