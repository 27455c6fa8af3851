"""Max pooling over non-overlapping windows as a reshape and a max.

XLA lowers `nnx.max_pool` to `reduce_window`, whose gradient on the CPU
(`select_and_scatter`) is several times slower than the reshape form's
(experiments/README.md has the figures). The values are the same, and so are
the gradients barring exact ties inside a window.
"""

import jax


def fits(shape, window, strides, padding, base_dilation, window_dilation) -> bool:
  """Whether a `reduce_window_max` over NHWC `shape` is a non-overlapping H, W pool."""
  return (len(shape) == 4 and window[0] == window[3] == 1 and tuple(strides) == tuple(window)
          and all(p == (0, 0) for p in padding) and set(base_dilation) == {1}
          and set(window_dilation) == {1} and shape[1] % window[1] == 0
          and shape[2] % window[2] == 0)


def max_pool(x: jax.Array, window_height: int, window_width: int) -> jax.Array:
  """The max over each non-overlapping `window_height` x `window_width` window of NHWC `x`."""
  n, height, width, channels = x.shape
  return x.reshape(n, height // window_height, window_height, width // window_width,
                   window_width, channels).max(axis=(2, 4))
