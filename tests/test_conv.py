"""The CPU convolution lowering gives lax's values and gradients, for every padding form."""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlearn.models import conv
from jaxlearn.models.conv import conv_general_dilated

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
