"""jaxlearn.xla_cpu: lax's values and gradients for every convolution form, in the loop too."""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from flax import nnx
import optax

from jaxlearn import create_train_state, xla_cpu
from jaxlearn.core import parallel
from jaxlearn.data import pipeline
from jaxlearn.training import compiled
from jaxlearn.xla_cpu import conv
from jaxlearn.xla_cpu.conv import conv_general_dilated

NHWC = ("NHWC", "HWIO", "NHWC")

# (input height/width, in channels, out channels, kernel, padding): LeNet-5's three layers,
# a CIFAR stem, and uneven explicit padding.
CASES = [(28, 1, 6, 5, [(2, 2), (2, 2)]), (14, 6, 16, 5, "VALID"), (5, 16, 120, 5, "VALID"),
         (32, 3, 16, 3, "SAME"), (9, 4, 5, 3, [(1, 0), (2, 1)])]
# ResNet's strided layers: 3x3 and 1x1 projections at stride 2, the 7x7/2 ImageNet stem, and a
# stride whose last window stops short of the padded edge.
STRIDED = [(16, 8, 32, 3, [(1, 1), (1, 1)], 2), (16, 8, 32, 1, "VALID", 2),
           (32, 3, 8, 7, "SAME", 2), (11, 4, 6, 3, "VALID", 3)]
# 16+ input channels and a small kernel: the gradients that keep channels minor (ResNet's
# blocks), with padding wider than the kernel, uneven padding, a 5x5 kernel and strides.
CHANNELS_MINOR = [(16, 16, 8, 3, "SAME", 1), (10, 16, 4, 3, [(3, 3), (3, 3)], 1),
                  (12, 16, 4, 3, [(0, 2), (1, 0)], 1), (16, 16, 4, 5, "VALID", 1),
                  (9, 16, 6, 3, [(1, 1), (1, 1)], 2), (8, 16, 4, 1, "VALID", 2),
                  (31, 16, 4, 5, "SAME", 3)]


@pytest.mark.parametrize("size,cin,cout,kernel,padding,stride",
                         [(*case, 1) for case in CASES] + STRIDED + CHANNELS_MINOR)
def test_values_and_gradients_match_lax(size, cin, cout, kernel, padding, stride):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(4, size, size, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, cin, cout)), jnp.float32)
  numbers = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
  out_shape = lax.conv_general_dilated(x, w, (stride, stride), padding,
                                       dimension_numbers=numbers).shape
  # The case lists above are meant to cover both gradient forms.
  assert conv._channels_minor(w.shape, out_shape) == (
      (size, cin, cout, kernel, padding, stride) in CHANNELS_MINOR)

  def reference(x, w):
    return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=numbers)

  def ours(x, w):
    return conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=numbers)

  np.testing.assert_allclose(jax.jit(ours)(x, w), reference(x, w), rtol=1e-4, atol=1e-4)
  loss = lambda f: lambda x, w: jnp.sin(f(x, w)).sum()
  expected = jax.grad(loss(reference), argnums=(0, 1))(x, w)
  got = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, w)
  for a, b in zip(got, expected):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_other_convolutions_fall_back_to_lax():
  x = jnp.ones((2, 8, 8, 4))
  w = jnp.ones((3, 3, 2, 6))
  numbers = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
  grouped = conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=numbers,
                                 feature_group_count=2)
  np.testing.assert_allclose(grouped, lax.conv_general_dilated(
      x, w, (2, 2), "SAME", dimension_numbers=numbers, feature_group_count=2))


def _conv_model_cases():
  from jaxlearn.models import LeNet5, ResNet18, ResNet20, SimpleCNN  # pylint: disable=import-outside-toplevel
  return [("lenet5", LeNet5(rngs=nnx.Rngs(0)), (4, 28, 28, 1)),
          ("simple_cnn", SimpleCNN(channels=(8, 16), hidden=16, rngs=nnx.Rngs(0)), (4, 28, 28, 1)),
          ("resnet20", ResNet20(rngs=nnx.Rngs(0)), (4, 32, 32, 3)),
          ("resnet18_imagenet_stem", ResNet18(small_images=False, rngs=nnx.Rngs(0)),
           (2, 32, 32, 3))]


@pytest.mark.parametrize("name,model,shape", _conv_model_cases(), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_cpu_kernels_give_the_plain_models_values_and_gradients(name, model, shape):
  state = create_train_state(model, optax.sgd(0.1), jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), shape)

  # Eval mode: batch norm by its running statistics (a batch of 4's own statistics make the
  # gradient so ill-conditioned that plain float32 is itself 1e-2 off a float64 reference).
  def loss(params, x):
    outputs, _ = state.apply_model(params, x, train=False)
    return jnp.sin(outputs).sum()

  params = state.params

  plain = jax.jit(jax.value_and_grad(loss))(params, x)
  swapped = jax.jit(jax.value_and_grad(xla_cpu.with_cpu_kernels(loss)))(params, x)
  np.testing.assert_allclose(swapped[0], plain[0], rtol=1e-4, err_msg=name)
  for a, b in zip(jax.tree.leaves(swapped[1]), jax.tree.leaves(plain[1])):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4, err_msg=name)
  # The swap really happened: the convolutions' gradients are the custom ones.
  swapped_program = str(jax.make_jaxpr(jax.grad(xla_cpu.with_cpu_kernels(loss)))(params, x))
  assert "custom_vjp_call" in swapped_program
  assert "custom_vjp_call" not in str(jax.make_jaxpr(jax.grad(loss))(params, x))


def test_max_pool_is_swapped_only_for_non_overlapping_windows():
  x = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
  weights = jnp.arange(1.0, 73.0).reshape(2, 4, 3, 3)
  pool = lambda v: (nnx.max_pool(v, (2, 2), strides=(2, 2)) * weights).sum()
  swapped = xla_cpu.with_cpu_kernels(pool)
  np.testing.assert_array_equal(swapped(x), pool(x))
  np.testing.assert_array_equal(jax.grad(swapped)(x), jax.grad(pool)(x))
  assert "select_and_scatter_add" in str(jax.make_jaxpr(jax.grad(pool))(x))
  assert "select_and_scatter_add" not in str(jax.make_jaxpr(jax.grad(swapped))(x))
  # Overlapping windows (ResNet's ImageNet stem) stay as they are.
  overlapping = lambda v: nnx.max_pool(v, (3, 3), strides=(2, 2), padding="SAME").sum()
  assert "reduce_window_max" in str(jax.make_jaxpr(xla_cpu.with_cpu_kernels(overlapping))(x))


def test_convolutions_inside_a_nested_jit_are_swapped_too():
  w = jnp.ones((3, 3, 1, 4))
  inner = jax.jit(lambda x: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                     dimension_numbers=NHWC))
  loss = lambda x: inner(x).sum()
  x = jnp.ones((2, 6, 6, 1))
  assert "custom_vjp_call" in str(jax.make_jaxpr(jax.grad(xla_cpu.with_cpu_kernels(loss)))(x))
  np.testing.assert_allclose(jax.grad(xla_cpu.with_cpu_kernels(loss))(x), jax.grad(loss)(x),
                             rtol=1e-5)


def test_the_loops_steps_match_with_and_without_cpu_kernels():
  from jaxlearn.models import LeNet5  # pylint: disable=import-outside-toplevel
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  arrays = {"inputs": rng.normal(size=(64, 28, 28, 1)).astype(np.float32),
            "targets": rng.integers(0, 10, 64).astype(np.int32)}
  epoch = pipeline.make_epoch_batcher(16, mesh)(pipeline.to_device(arrays, mesh), 0, 0)
  results = []
  for cpu_kernels in (False, True):
    state = jax.device_put(create_train_state(LeNet5(rngs=nnx.Rngs(0)), optax.adam(1e-3),
                                              jax.random.key(1)), parallel.replicated(mesh))
    train_chunk, eval_batch = compiled.compile_steps(mesh, steps_per_call=4,
                                                     cpu_kernels=cpu_kernels)
    state, metrics, _ = train_chunk(state, epoch, 0, 4)
    results.append((jax.device_get(state.params), metrics.compute()["loss"]))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               results[0][0], results[1][0])
  np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)


def test_a_rejected_compiler_option_is_left_out_and_logged(caplog):
  from jaxlearn.xla_cpu import options  # pylint: disable=import-outside-toplevel
  with caplog.at_level("WARNING"):
    kept = options.accepted({"xla_cpu_no_such_option_in_any_xla": "1"})
  assert kept == {}
  assert "XLA does not accept the CPU option xla_cpu_no_such_option_in_any_xla=1" in caplog.text
  assert xla_cpu.compiler_options("train", "gpu") == {}
  assert xla_cpu.compiler_options("train", "cpu") == options.TRAIN  # This XLA has it.
