"""Model shapes and exact parameter counts."""

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from jaxlearn.errors import ConfigError
from jaxlearn.models import LeNet5, MLP, create_model


def _num_params(model) -> int:
  return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_lenet5_has_the_seed_parameter_count_and_output_shape():
  model = LeNet5(rngs=nnx.Rngs(0))
  # conv1 156 + conv2 2,416 + conv3 48,120 + fc1 10,164 + fc2 850.
  assert _num_params(model) == 61_706
  assert model(jnp.zeros((3, 28, 28, 1))).shape == (3, 10)


def test_create_model_rejects_unknown_name_and_argument():
  with pytest.raises(ConfigError, match="Unknown model 'lenet' in config.model.name; choose one of \\[.*'lenet5', "
                     "'linear_regression', 'lstm', 'mlp'"):
    create_model(ml_collections.ConfigDict({"name": "lenet"}), nnx.Rngs(0))
  with pytest.raises(ConfigError, match="config.model has \\['width'\\], which LeNet5 does not "
                     "take; its arguments are \\['in_channels', 'num_classes'\\]"):
    create_model(ml_collections.ConfigDict({"name": "lenet5", "width": 3}), nnx.Rngs(0))


def test_mlp_variants_have_their_parameter_counts():
  assert _num_params(MLP(rngs=nnx.Rngs(0))) == 784 * 128 + 128 + 128 * 10 + 10
  bn = MLP(hidden=(256,), batch_norm=True, rngs=nnx.Rngs(0))
  assert _num_params(bn) == 784 * 256 + 256 + 2 * 256 + 256 * 10 + 10  # BN: scale and bias.
  ln = MLP(hidden=(256,), layer_norm=True, rngs=nnx.Rngs(0))
  assert _num_params(ln) == _num_params(bn)
  assert bn(jnp.zeros((3, 28, 28, 1))).shape == (3, 10)


def test_dropout_and_batch_norm_switch_off_in_eval_mode():
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 784))
  model = MLP(hidden=(64,), dropout=0.5, rngs=nnx.Rngs(0))
  a = model(x, train=True, rngs=nnx.Rngs(dropout=1))
  b = model(x, train=True, rngs=nnx.Rngs(dropout=2))
  assert not jnp.allclose(a, b)  # Different dropout masks while training...
  assert jnp.array_equal(model(x), model(x))  # ... none in eval mode.

  bn = MLP(hidden=(64,), batch_norm=True, rngs=nnx.Rngs(0))
  # In eval mode an example's output does not depend on the rest of its batch.
  assert jnp.allclose(bn(x)[:4], bn(x[:4]), atol=1e-6)
  # In training mode it does (batch statistics), and the running statistics move.
  assert not jnp.allclose(bn(x, train=True)[:4], bn(x[:4], train=True), atol=1e-3)
  assert not jnp.allclose(bn.norms[0].mean.get_value(), 0.0)
