"""Model shapes and exact parameter counts."""

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
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


def test_dropout_at_a_traced_rate_drops_as_flax_dropout_at_that_rate():
  from jaxlearn.models import dropout  # pylint: disable=import-outside-toplevel
  x = jnp.arange(1.0, 2001.0).reshape(20, 100)
  key = jax.random.key(3)
  layer = dropout.Dropout(0.9)  # Inside the context the traced rate replaces its own.

  @jax.jit
  def at_rate(rate):
    with dropout.rate_of_every_dropout(rate):
      return layer(x, deterministic=False, rngs=nnx.Rngs(dropout=key))

  for rate in (0.0, 0.3, 0.7):
    expected = nnx.Dropout(rate)(x, deterministic=False, rngs=nnx.Rngs(dropout=key))
    got = at_rate(jnp.float32(rate))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert float((got == 0).mean()) == pytest.approx(rate, abs=0.05)
  np.testing.assert_array_equal(at_rate(jnp.float32(0.0)), x)  # Rate 0 keeps all, exactly.
  # Outside the context it is flax's own dropout at its own rate.
  np.testing.assert_array_equal(layer(x, deterministic=False, rngs=nnx.Rngs(dropout=key)),
                                nnx.Dropout(0.9)(x, deterministic=False,
                                                 rngs=nnx.Rngs(dropout=key)))
