"""Model shapes and exact parameter counts."""

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from jaxlearn.errors import ConfigError
from jaxlearn.models import LeNet5, create_model


def _num_params(model) -> int:
  return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_lenet5_has_the_seed_parameter_count_and_output_shape():
  model = LeNet5(rngs=nnx.Rngs(0))
  # conv1 156 + conv2 2,416 + conv3 48,120 + fc1 10,164 + fc2 850.
  assert _num_params(model) == 61_706
  assert model(jnp.zeros((3, 28, 28, 1))).shape == (3, 10)


def test_create_model_rejects_unknown_name_and_argument():
  with pytest.raises(ConfigError, match="Unknown model 'lenet' in config.model.name; choose one of \\['lenet5', 'mlp'\\]"):
    create_model(ml_collections.ConfigDict({"name": "lenet"}), nnx.Rngs(0))
  with pytest.raises(ConfigError, match="config.model has \\['width'\\], which LeNet5 does not "
                     "take; its arguments are \\['in_channels', 'num_classes'\\]"):
    create_model(ml_collections.ConfigDict({"name": "lenet5", "width": 3}), nnx.Rngs(0))
