"""Merging clu metric collections and reading them back as Python floats."""

import functools

import jax
import jax.numpy as jnp
import numpy as np


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


def to_record(collection) -> list:
  """The collection's arrays as nested lists, to keep in a checkpoint's JSON progress."""
  return [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(jax.device_get(collection))]


def from_record(record: list, like):
  """A collection shaped like `like` holding the arrays of `to_record`'s `record`."""
  leaves = jax.tree.leaves(like)
  return jax.tree.unflatten(jax.tree.structure(like),
                            [jnp.asarray(value, leaf.dtype) for value, leaf in zip(record, leaves)])
