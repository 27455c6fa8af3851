"""The model zoo: parameter counts by hand, output shapes, eval modes, and masking of padding."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlearn.errors import ConfigError
from jaxlearn.models import (BasicBlock, DigitTransformer, EmbeddingBagMLP, GRUClassifier,
                             LinearRegression, LSTMClassifier, ResNet18, ResNet20, ResNet56,
                             SimpleClassifier, SimpleCNN, SimpleRNNClassifier)
from jaxlearn.models.transformer import sinusoidal_positions


def _num_params(model) -> int:
  return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _conv(cin, cout, k=3):
  return k * k * cin * cout


def _cifar_resnet_params(n: int) -> int:
  """Hand count: stem conv + BN, 3 stages of n BasicBlocks (1x1 projections), fc 64 -> 10."""
  total = _conv(3, 16) + 2 * 16
  channels = 16
  for width in (16, 32, 64):
    for i in range(n):
      total += _conv(channels, width) + _conv(width, width) + 2 * 2 * width
      if channels != width:
        total += _conv(channels, width, 1) + 2 * width
      channels = width
  return total + 64 * 10 + 10


def test_first_models_have_their_hand_counted_parameters():
  assert _num_params(LinearRegression(rngs=nnx.Rngs(0))) == 2
  assert _num_params(SimpleClassifier(rngs=nnx.Rngs(0))) == 2 * 4 + 4 + 4 + 1
  assert _num_params(SimpleCNN(rngs=nnx.Rngs(0))) == 63_050  # conv 320 + fc 6272*10+10.
  out = SimpleCNN(rngs=nnx.Rngs(0))(jnp.zeros((2, 28, 28, 1)))
  assert out.shape == (2, 10)


def test_linear_regression_is_x_times_w_plus_b():
  model = LinearRegression(in_features=3, out_features=1, rngs=nnx.Rngs(0))
  x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  expected = x @ np.asarray(model.linear.kernel.get_value()) + np.asarray(
      model.linear.bias.get_value())
  np.testing.assert_allclose(model(jnp.asarray(x)), expected, rtol=1e-5)


def test_resnet_counts_match_the_hand_count():
  assert _num_params(ResNet20(rngs=nnx.Rngs(0))) == _cifar_resnet_params(3) == 272_474
  assert _num_params(ResNet56(rngs=nnx.Rngs(0))) == _cifar_resnet_params(9)
  # The widely published CIFAR ResNet-18 count (3x3 stem, 1x1 projection shortcuts).
  assert _num_params(ResNet18(rngs=nnx.Rngs(0))) == 11_173_962


def test_basic_block_projects_only_when_shape_changes():
  same = BasicBlock(16, 16, 1, rngs=nnx.Rngs(0))
  down = BasicBlock(16, 32, 2, rngs=nnx.Rngs(0))
  assert same.projection is None and down.projection is not None
  assert down(jnp.ones((2, 8, 8, 16)), train=False).shape == (2, 4, 4, 32)
  assert ResNet20(rngs=nnx.Rngs(0))(jnp.zeros((2, 32, 32, 3))).shape == (2, 10)
  imagenet_stem = ResNet18(small_images=False, rngs=nnx.Rngs(0))
  assert imagenet_stem(jnp.zeros((1, 64, 64, 3))).shape == (1, 10)


def test_resnet_eval_uses_running_statistics_and_train_updates_them():
  model = ResNet20(rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  # Eval: each example's output is independent of the rest of the batch.
  np.testing.assert_allclose(model(x, train=False)[:1], model(x[:1], train=False), atol=1e-5)
  before = model.stem_bn.mean.get_value()
  model(x, train=True)
  assert not jnp.allclose(before, model.stem_bn.mean.get_value())


def test_bad_resnet_depth_is_reported():
  from jaxlearn.models.resnet import CifarResNet
  with pytest.raises(ConfigError, match="depth is 6n \\+ 2 \\(20, 32, 44, 56, 110\\), not 21"):
    CifarResNet(21, rngs=nnx.Rngs(0))


def test_digit_transformer_tokens_and_shapes():
  patches = DigitTransformer(rngs=nnx.Rngs(0))
  rows = DigitTransformer(tokens="rows", position="sinusoidal", rngs=nnx.Rngs(0))
  images = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
  assert patches.to_tokens(images).shape == (2, 16, 49)
  assert rows.to_tokens(images).shape == (2, 28, 28)
  # Patch (1, 2) holds pixels [7:14, 14:21].
  np.testing.assert_array_equal(patches.to_tokens(images)[0, 4 + 2],
                                np.asarray(images[0, 7:14, 14:21, 0]).ravel())
  assert patches(images).shape == rows(images).shape == (2, 10)
  assert patches.positions.get_value().shape == (1, 17, 64)
  assert isinstance(rows.positions, nnx.Variable) and not isinstance(rows.positions, nnx.Param)


def test_sinusoidal_positions_follow_the_formula():
  codes = sinusoidal_positions(10, 8)
  pos, i = 3, 2
  assert codes[pos, 2 * i] == pytest.approx(np.sin(pos / 10000 ** (2 * i / 8)), abs=1e-6)
  assert codes[pos, 2 * i + 1] == pytest.approx(np.cos(pos / 10000 ** (2 * i / 8)), abs=1e-6)


def test_transformer_dropout_only_in_training():
  model = DigitTransformer(dropout=0.5, rngs=nnx.Rngs(0))
  x = jnp.ones((2, 28, 28, 1))
  np.testing.assert_array_equal(model(x), model(x))
  a = model(x, train=True, rngs=nnx.Rngs(dropout=1))
  b = model(x, train=True, rngs=nnx.Rngs(dropout=2))
  assert not jnp.allclose(a, b)


def test_transformer_rejects_patch_size_that_does_not_divide():
  with pytest.raises(ConfigError, match="patch_size=5 must divide the image size 28x28"):
    DigitTransformer(patch_size=5, rngs=nnx.Rngs(0))


TEXT_MODELS = {
    "gru": lambda: GRUClassifier(50, embed_dim=8, hidden=16, rngs=nnx.Rngs(0)),
    "bigru": lambda: GRUClassifier(50, embed_dim=8, hidden=16, bidirectional=True,
                                   rngs=nnx.Rngs(0)),
    "lstm": lambda: LSTMClassifier(50, embed_dim=8, hidden=16, rngs=nnx.Rngs(0)),
    "bilstm": lambda: LSTMClassifier(50, embed_dim=8, hidden=16, bidirectional=True,
                                     rngs=nnx.Rngs(0)),
    "bag": lambda: EmbeddingBagMLP(50, embed_dim=8, hidden=(16,), rngs=nnx.Rngs(0)),
    "bag_one_width": lambda: EmbeddingBagMLP(50, embed_dim=8, hidden=16, rngs=nnx.Rngs(0)),
    "simple_rnn": lambda: SimpleRNNClassifier(50, embed_dim=8, hidden=16, rngs=nnx.Rngs(0)),
}


@pytest.mark.parametrize("name", sorted(TEXT_MODELS))
def test_padding_does_not_change_a_text_prediction(name):
  model = TEXT_MODELS[name]()
  sentences = [[5, 9, 12, 3], [7, 2, 30, 31, 32, 40, 41]]
  short = np.zeros((2, 8), np.int32)
  long = np.zeros((2, 40), np.int32)
  for row, ids in enumerate(sentences):
    short[row, :len(ids)] = ids
    long[row, :len(ids)] = ids
  np.testing.assert_allclose(model(jnp.asarray(short)), model(jnp.asarray(long)), atol=1e-5)
  # A real token does change it.
  changed = short.copy()
  changed[0, 1] = 44
  assert not np.allclose(model(jnp.asarray(changed))[0], model(jnp.asarray(short))[0])


def test_gru_state_is_the_cell_run_over_the_real_tokens():
  model = GRUClassifier(50, embed_dim=8, hidden=16, rngs=nnx.Rngs(0))
  ids = jnp.asarray([[5, 9, 12, 0, 0, 0]])
  h = jnp.zeros((1, 16))
  for token in (5, 9, 12):  # Step the cell by hand over the 3 real tokens.
    h, _ = model.forward_rnn.cell(h, model.embed(jnp.asarray([token])))
  np.testing.assert_allclose(model(ids), model.head(h), atol=1e-5)


def test_bidirectional_backward_pass_reads_the_sentence_from_its_last_real_token():
  model = GRUClassifier(50, embed_dim=8, hidden=16, bidirectional=True, rngs=nnx.Rngs(0))
  ids = jnp.asarray([[5, 9, 12, 0, 0]])
  h = jnp.zeros((1, 16))
  for token in (12, 9, 5):
    h, _ = model.backward_rnn.cell(h, model.embed(jnp.asarray([token])))
  forward = jnp.zeros((1, 16))
  for token in (5, 9, 12):
    forward, _ = model.forward_rnn.cell(forward, model.embed(jnp.asarray([token])))
  np.testing.assert_allclose(model(ids), model.head(jnp.concatenate([forward, h], -1)),
                             atol=1e-5)


def test_embedding_bag_is_the_mean_of_real_token_embeddings():
  model = EmbeddingBagMLP(50, embed_dim=8, hidden=(), rngs=nnx.Rngs(0))
  ids = jnp.asarray([[4, 6, 0, 0]])
  mean = model.embed(jnp.asarray([4, 6])).mean(0, keepdims=True)
  np.testing.assert_allclose(model(ids), model.head(mean), atol=1e-6)


# Every zoo model with small sizes and an input it takes: (kwargs, input shape, integer ids?).
FORWARD_MODE_CASES = {
    "linear_regression": ({"in_features": 3}, (4, 3), False),
    "simple_classifier": ({}, (4, 2), False),
    "mlp": ({"in_features": 12, "hidden": (8,), "batch_norm": True}, (4, 12), False),
    "simple_cnn": ({"channels": (4,), "hidden": 8}, (2, 28, 28, 1), False),
    "lenet5": ({}, (2, 28, 28, 1), False),
    "resnet": ({"blocks": (1, 1), "widths": (4, 8), "small_images": False}, (2, 32, 32, 3),
               False),
    "resnet18": ({}, (1, 16, 16, 3), False),
    "resnet20": ({}, (2, 16, 16, 3), False),
    "resnet56": ({}, (1, 8, 8, 3), False),
    "digit_transformer": ({"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 16}, (2, 28, 28, 1),
                          False),
    "rnn": ({"vocab_size": 30, "embed_dim": 8, "hidden": 8}, (2, 6), True),
    "gru": ({"vocab_size": 30, "embed_dim": 8, "hidden": 8, "bidirectional": True}, (2, 6), True),
    "lstm": ({"vocab_size": 30, "embed_dim": 8, "hidden": 8}, (2, 6), True),
    "simple_rnn": ({"vocab_size": 30, "embed_dim": 8, "hidden": 8}, (2, 6), True),
    "embedding_bag": ({"vocab_size": 30, "embed_dim": 8, "hidden": (8,)}, (2, 6), True),
}
# The deep ResNets share every layer with resnet20 and resnet; a Hessian-vector product
# through them adds only compile time.
NO_HVP = {"resnet18", "resnet20", "resnet56"}


def test_every_zoo_model_has_a_case():
  from jaxlearn.models import MODELS  # pylint: disable=import-outside-toplevel
  assert sorted(FORWARD_MODE_CASES) == sorted(MODELS)


@pytest.mark.parametrize("name", sorted(FORWARD_MODE_CASES))
def test_forward_mode_derivatives_work_for_every_zoo_model(name):
  """jax.jvp and a Hessian-vector product in parameters: no custom_vjp anywhere in the zoo."""
  from jaxlearn.models import MODELS  # pylint: disable=import-outside-toplevel
  kwargs, shape, ids = FORWARD_MODE_CASES[name]
  model = MODELS[name](**kwargs, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  rng = np.random.default_rng(0)
  x = (jnp.asarray(rng.integers(1, 30, shape)) if ids
       else jnp.asarray(rng.normal(size=shape), jnp.float32))

  def loss(params):
    return jnp.sum(jnp.tanh(nnx.merge(graphdef, params, rest)(x, train=False)))

  tangent = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
  value, derivative = jax.jit(lambda p, t: jax.jvp(loss, (p,), (t,)))(params, tangent)
  # The forward-mode directional derivative is the gradient's projection on the tangent.
  grads = jax.jit(jax.grad(loss))(params)
  projection = sum(jnp.vdot(g, t) for g, t in zip(jax.tree.leaves(grads), jax.tree.leaves(tangent)))
  np.testing.assert_allclose(derivative, projection, rtol=2e-3, atol=1e-4)
  assert np.isfinite(value)
  if name in NO_HVP:
    return
  # Hessian-vector product, forward over reverse, against reverse over reverse.
  hvp = jax.jit(lambda p, t: jax.jvp(jax.grad(loss), (p,), (t,))[1])(params, tangent)
  directional = lambda p: sum(jnp.vdot(g, t) for g, t in zip(jax.tree.leaves(jax.grad(loss)(p)),
                                                             jax.tree.leaves(tangent)))
  reverse = jax.jit(jax.grad(directional))(params)
  flat = lambda tree: jnp.concatenate([a.ravel() for a in jax.tree.leaves(tree)])
  error = float(jnp.linalg.norm(flat(hvp) - flat(reverse)))
  assert error <= 1e-3 * float(jnp.linalg.norm(flat(reverse))) + 1e-5, error
