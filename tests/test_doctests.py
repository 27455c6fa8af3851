"""The examples in the research API's docstrings run as written (doctest)."""

import doctest
import importlib

import pytest

# The modules of the public names (`from jaxlearn import ...`) and the pure pieces beside them.
MODULES = ["jaxlearn.core.paths", "jaxlearn.core.state", "jaxlearn.core.step",
           "jaxlearn.core.tasks", "jaxlearn.core.gradients", "jaxlearn.training.train",
           "jaxlearn.runs.inference", "jaxlearn.deploy.export", "jaxlearn.evaluation.evaluate",
           "jaxlearn.models.summary", "jaxlearn.training.lr_find"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                           verbose=False)
  assert result.attempted > 0, f"{name} has no docstring example"
  assert result.failed == 0
