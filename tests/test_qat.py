"""Quantization-aware training: qwix's fake quantization, checked by hand and end to end."""

import functools
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import mnist_lenet
from jaxlearn import config as config_lib
from jaxlearn.core import state as state_lib
from jaxlearn.deploy import quantize
from jaxlearn.errors import ConfigError
from jaxlearn.evaluation import evaluate
from jaxlearn.models import qat
from jaxlearn.models.lenet import LeNet5
from jaxlearn.runs import finished, inference
from jaxlearn.training import train
from tests.conftest import make_fake_mnist


def fake_quantize(v, reduce_axes):
  """int8 with one scale per slice over `reduce_axes`: max |v| / 127.5, levels -128..127."""
  scale = jnp.abs(v).max(axis=reduce_axes, keepdims=True) / 127.5
  return jnp.clip(jnp.round(v / scale), -128, 127) * scale


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def straight_through(v, reduce_axes):
  """fake_quantize forward, identity backward."""
  return fake_quantize(v, reduce_axes)


straight_through.defvjp(lambda v, axes: (fake_quantize(v, axes), None),
                        lambda axes, _, g: (g,))


def quantized_matmul(x, w):
  return fake_quantize(x, (1,)) @ fake_quantize(w, (0,))


@jax.custom_vjp
def straight_through_matmul(x, w):
  """quantized_matmul forward; backward as a float matmul of the unquantized operands (qwix
  keeps those for a dense layer's backward pass; a convolution's uses the quantized ones)."""
  return quantized_matmul(x, w)


straight_through_matmul.defvjp(lambda x, w: (quantized_matmul(x, w), (x, w)),
                               lambda xw, g: (g @ xw[1].T, xw[0].T @ g))


def lenet_by_hand(params, x, quant=fake_quantize, matmul=quantized_matmul):
  """LeNet-5 with every kernel per output channel, every input per example (per row)."""
  def conv(x, p, padding):
    y = jax.lax.conv_general_dilated(quant(x, (1, 2, 3)), quant(p["kernel"], (0, 1, 2)),
                                     (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]

  def dense(x, p):
    return matmul(x, p["kernel"]) + p["bias"]

  pool = lambda h: nnx.avg_pool(h, (2, 2), (2, 2))
  h = pool(jax.nn.relu(conv(x, params["conv1"], ((2, 2), (2, 2)))))
  h = pool(jax.nn.relu(conv(h, params["conv2"], "VALID")))
  h = jax.nn.relu(conv(h, params["conv3"], "VALID")).reshape(x.shape[0], -1)
  return dense(jax.nn.relu(dense(h, params["fc1"])), params["fc2"])


def _lenet_pair():
  model = LeNet5(rngs=nnx.Rngs(0))
  qat_model = qat.quantize_for_training(model, "int8_qat")
  params = nnx.state(qat_model, nnx.Param)
  plain = {k: {n: v.value for n, v in layer.items()} for k, layer in params.items()}
  return qat_model, plain


def test_the_forward_pass_is_int8_fake_quantization_by_hand():
  qat_model, params = _lenet_pair()
  x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  np.testing.assert_allclose(qat_model(x), lenet_by_hand(params, x), atol=1e-5)
  float_model = LeNet5(rngs=nnx.Rngs(0))
  assert np.abs(np.asarray(float_model(x) - qat_model(x))).max() > 1e-3


def test_gradients_pass_straight_through_the_rounding():
  qat_model, params = _lenet_pair()
  state = state_lib.create_train_state(qat_model, optax.sgd(0.1), jax.random.key(0))
  x = jax.random.normal(jax.random.key(2), (4, 28, 28, 1))
  qat_loss = lambda p: jnp.sum(state.apply_model(p, x, train=True)[0] ** 2)
  grads = jax.grad(qat_loss)(state.params)
  by_hand = lambda p: jnp.sum(lenet_by_hand(p, x, straight_through,
                                             straight_through_matmul) ** 2)
  expected = jax.grad(by_hand)(params)
  for layer, names in expected.items():
    for name, value in names.items():
      np.testing.assert_allclose(grads[layer][name], value, rtol=1e-4, atol=1e-5)


def test_a_qat_run_quantizes_to_what_it_trained(tmp_path):
  config = mnist_lenet.get_config()
  config.progress_bar, config.compilation_cache_dir = False, ""
  config.data.dir = make_fake_mnist(str(tmp_path / "data"))
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 80, 2
  config.quantization = "int8_qat"
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  report = quantize.quantize_and_export(str(tmp_path / "run"), str(tmp_path / "q"),
                                        "int8_weights")
  assert report["trained_with"] == "int8_qat"
  assert report["trained_test"]["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
  # The int8 artifact computes what training computed: only a rounding that lands on the
  # other side of a half step (float vs int32 sums) can tell them apart.
  run = finished.load_run(str(tmp_path / "run"))
  _, stored, _ = evaluate.split_inputs(run, "test")
  trained = evaluate.predict_in_batches(inference.load_predictor(str(tmp_path / "run")),
                                        stored, 80)
  int8 = np.asarray(jax.jit(quantize.quantize_run(run, "int8_weights").fn)(stored))
  differs = np.abs(trained - int8).max(axis=1) > 1e-4
  assert differs.mean() <= 0.01
  assert abs(report["int8_test"]["accuracy"] - report["trained_test"]["accuracy"]) <= 0.01


def test_unknown_quantization_and_missing_qwix_are_named(monkeypatch):
  config = mnist_lenet.get_config()
  config.quantization = "int4"
  with pytest.raises(ConfigError, match=r"config.quantization='int4' is not allowed: it must "
                                        r"be one of \['none', 'int8_qat'\]"):
    config_lib.validate(config)
  monkeypatch.setitem(sys.modules, "qwix", None)
  with pytest.raises(ConfigError, match=r"pip install 'jaxlearn\[quantization\]'"):
    qat.quantize_for_training(LeNet5(rngs=nnx.Rngs(0)), "int8_qat")
