"""`jaxlearn.gradcheck`, and derivatives of every order through every zoo model and loss."""

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import jaxlearn
from jaxlearn.core import losses
from jaxlearn.models import MODELS, create_model

# Small inputs per model: (model config fields, one batch of inputs).
_IMAGE = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
ZOO = {
    "linear_regression": ({"in_features": 3}, np.ones((2, 3), np.float32)),
    "simple_classifier": ({"in_features": 3}, np.ones((2, 3), np.float32)),
    "mlp": ({"in_features": 64, "hidden": (8,), "batch_norm": True}, _IMAGE),
    "simple_cnn": ({"image_size": (8, 8), "channels": (4,)}, _IMAGE),
    "lenet5": ({}, np.random.default_rng(1).normal(size=(2, 28, 28, 1)).astype(np.float32)),
    "resnet": ({"blocks": (1,), "widths": (4,), "in_channels": 1}, _IMAGE),
    "resnet18": ({"in_channels": 1}, _IMAGE),
    "resnet20": ({"in_channels": 1}, _IMAGE),
    "resnet56": ({"in_channels": 1}, _IMAGE),
    "digit_transformer": ({"image_size": (8, 8), "patch_size": 4, "dim": 8, "depth": 1,
                           "heads": 2, "mlp_dim": 8}, _IMAGE),
    "rnn": ({"vocab_size": 20, "embed_dim": 4, "hidden": 4}, np.array([[3, 4, 0], [5, 0, 0]])),
    "gru": ({"vocab_size": 20, "embed_dim": 4, "hidden": 4}, np.array([[3, 4, 0], [5, 0, 0]])),
    "lstm": ({"vocab_size": 20, "embed_dim": 4, "hidden": 4}, np.array([[3, 4, 0], [5, 0, 0]])),
    "simple_rnn": ({"vocab_size": 20, "embed_dim": 4, "hidden": 4},
                   np.array([[3, 4, 0], [5, 0, 0]])),
    "embedding_bag": ({"vocab_size": 20, "embed_dim": 4, "hidden": (4,)},
                      np.array([[3, 4, 0], [5, 0, 0]])),
}


def test_every_zoo_model_has_a_case():
  assert set(ZOO) == set(MODELS)


def _pure_model(name):
  """(forward(params, x), params, x), the parameters moved off their initial values.

  At initialisation biases are zero, so zeros run exactly into ReLUs' kinks (where no
  derivative exists); a small random shift gives a generic point.
  """
  fields, inputs = ZOO[name]
  model = create_model(ml_collections.ConfigDict({"name": name, **fields}), nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  forward = lambda p, x: nnx.merge(graphdef, p, rest)(x, train=False)
  params = nnx.to_pure_dict(params) if hasattr(nnx, "to_pure_dict") else params
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(treedef, [a + 0.05 * jax.random.normal(k, a.shape, a.dtype)
                                        for a, k in zip(leaves, keys)])
  return forward, params, inputs


# nnx.Embed computes in float32 whatever its table's dtype, so the text models run in float32.
FLOAT32_ONLY = ("rnn", "gru", "lstm", "simple_rnn", "embedding_bag")
# Deep ReLU networks: a random direction over millions of weights moves pre-activations far
# enough at eps=1e-6 to cross ReLU kinks; 1e-8 (float64 still resolves it) does not.
SMALL_STEP = ("resnet18", "resnet56")
# Over 20 s each on 2 CPU cores: run with the real-data tests (-m slow).
SLOW = ("resnet18", "resnet20", "resnet56", "digit_transformer", "lenet5")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(ZOO)])
def test_gradcheck_passes_on_every_zoo_models_forward_pass(name):
  forward, params, inputs = _pure_model(name)
  order = 1 if name in ("resnet18", "resnet56") else 2  # The deep ones: first order (time).
  precision = "float32" if name in FLOAT32_ONLY else "float64"
  report = jaxlearn.gradcheck(lambda p, x: forward(p, x), params, inputs, order=order,
                              precision=precision, eps=1e-8 if name in SMALL_STEP else None,
                              verbose=False)
  assert report.ok, str(report)
  checked_arguments = {c.argument for c in report.checks}
  assert 0 in checked_arguments  # The parameters, always.
  assert (1 in checked_arguments) == (inputs.dtype.kind == "f")  # Token ids are not checked.
  assert max(c.relative_error for c in report.checks) < (1e-5 if precision == "float64" else 2e-2)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_gradcheck_passes_on_every_loss(name):
  loss_fn, _ = losses.LOSSES[name]
  rng = np.random.default_rng(0)
  if name in ("binary_cross_entropy", "binary_focal", "hinge"):
    outputs, targets = rng.normal(size=(4, 1)), np.array([0.0, 1.0, 1.0, 0.0])
  elif name in ("mse", "mae", "huber"):
    outputs, targets = rng.normal(size=(4, 2)), rng.normal(size=(4, 2)) + 3.0  # No kinks.
  elif name == "dice":
    outputs, targets = rng.normal(size=(2, 3, 3, 2)), rng.integers(0, 2, (2, 3, 3))
  elif name == "distillation_kl":
    outputs, targets = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
  else:
    outputs, targets = rng.normal(size=(4, 3)), np.array([0, 2, 1, 2])
  arguments = (outputs, targets) if name == "distillation_kl" else (outputs,)
  fn = (lambda o, t: loss_fn(o, t)) if name == "distillation_kl" else (
      lambda o: loss_fn(o, jnp.asarray(targets)))
  report = jaxlearn.gradcheck(fn, *arguments, verbose=False)
  assert report.ok, str(report)


def test_a_wrong_custom_gradient_is_caught_and_reported(capsys):

  @jax.custom_jvp
  def bad_softplus(x):
    return jnp.log1p(jnp.exp(x))

  @bad_softplus.defjvp
  def _(primals, tangents):
    (x,), (t,) = primals, tangents
    return bad_softplus(x), jax.nn.sigmoid(x) * t * 1.01  # 1% off.

  report = jaxlearn.gradcheck(bad_softplus, np.linspace(-2, 2, 5))
  assert not report.ok
  first = [c for c in report.checks if c.order == 1]
  assert all(not c.passed and c.relative_error > 1e-3 for c in first), str(report)
  assert "FAILED" in capsys.readouterr().out


@pytest.mark.slow  # 18 s on 2 cores.
def test_jacobians_and_hessian_vector_products_of_a_conv_model_on_the_cpu():
  forward, params, inputs = _pure_model("lenet5")
  loss = lambda p: jnp.mean(forward(p, inputs) ** 2)
  tangent = jax.tree.map(jnp.ones_like, params)
  hvp_forward_over_reverse = jax.jvp(jax.grad(loss), (params,), (tangent,))[1]
  hvp_reverse_over_reverse = jax.grad(lambda p: jnp.vdot(
      jnp.concatenate([g.ravel() for g in jax.tree.leaves(jax.grad(loss)(p))]),
      jnp.concatenate([t.ravel() for t in jax.tree.leaves(tangent)])))(params)
  for a, b in zip(jax.tree.leaves(hvp_forward_over_reverse),
                  jax.tree.leaves(hvp_reverse_over_reverse)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)
  jacobian = jax.jacfwd(lambda x: forward(params, x))(inputs[:1])
  assert jacobian.shape == (1, 10, 1, 28, 28, 1)
  small = functools.partial(forward, params)
  hessian = jax.hessian(lambda x: small(x)[0, 3])(inputs[:1])
  assert hessian.shape == (1, 28, 28, 1, 1, 28, 28, 1) and bool(jnp.isfinite(hessian).all())


def _custom_vjp_layer(backward_scale: float):
  """tanh(x) * x with its own backward pass, off by `backward_scale` (1: exact)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  @jax.custom_vjp
  def act(x):
    return jnp.tanh(x) * x

  def backward(x, g):
    return (g * backward_scale * ((1 - jnp.tanh(x) ** 2) * x + jnp.tanh(x)),)

  act.defvjp(lambda x: (act(x), x), backward)
  return lambda w, x: act(x @ w).sum()


def test_a_custom_vjp_layer_is_checked_in_reverse_mode_and_a_1_percent_error_is_caught():
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from jaxlearn import gradcheck  # pylint: disable=import-outside-toplevel
  w, x = jnp.full((3, 2), 0.3), jnp.linspace(-1, 1, 12).reshape(4, 3)
  right = gradcheck(_custom_vjp_layer(1.0), w, x, verbose=False)
  assert right.ok
  assert [(c.mode, c.applicable) for c in right.checks if c.argument == 0] == [
      ("fwd", False), ("rev", True), ("rev", True)]
  assert "jax.custom_vjp" in right.checks[0].message
  wrong = gradcheck(_custom_vjp_layer(1.01), w, x, verbose=False)
  assert not wrong.ok
  first_order = [c for c in wrong.checks if c.mode == "rev" and c.order == 1]
  assert all(not c.passed for c in first_order)
  assert first_order[0].relative_error == pytest.approx(0.01, rel=0.05)  # The 1% shows.
