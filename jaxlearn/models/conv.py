"""A 2-D convolution lowering that is fast on XLA's CPU backend; `lax` everywhere else.

XLA:CPU runs small NHWC convolutions far below the machine's speed: LeNet-5's
first layer (1 -> 6 channels) takes ~5.5 ms forward at batch 128 on a 2-core
CPU, and the input gradient of every layer goes through a slow generic
transposed convolution. Measured per piece (see experiments/README.md), the
fastest correct pieces are:

- forward: `lax` convolution, except for stride-1 inputs with very few channels,
  where a sum of shifted, broadcast multiplies (one fused XLA loop) is ~10x faster;
- kernel gradient: a plain convolution with the batch as the contracted axis,
  written out so that it keeps a layout XLA:CPU runs fast also inside a loop
  (the training loop runs chunks of steps as one `fori_loop`);
- input gradient: for stride 1 the transpose of im2col, i.e. one matmul
  `dy @ W^T` and the sum of the kernel-offset slices padded back into place
  (one fused loop); for larger strides `lax`'s transposed convolution.

`conv_general_dilated` has `lax.conv_general_dilated`'s signature, so it plugs
into `nnx.Conv(..., conv_general_dilated=conv_general_dilated)`: parameters,
checkpoints and results are those of a plain `nnx.Conv`. Undilated, ungrouped
2-D NHWC convolutions on the CPU take the custom path; others go to `lax`.
"""

import functools

from flax import nnx
import jax
import jax.numpy as jnp
from jax import lax

# Inputs with at most this many channels use the shifted-multiply forward pass.
_FEW_CHANNELS = 3
_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kwargs):
  """`lax.conv_general_dilated`, with a faster lowering of the common cases on the CPU."""
  strides = tuple(window_strides)
  simple = (jax.default_backend() == "cpu" and lhs.ndim == 4
            and _is_nhwc(dimension_numbers, lhs.ndim)
            and all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
            and feature_group_count == 1 and precision is None
            and kwargs.get("preferred_element_type") is None)
  pads = _explicit_padding(lhs.shape, rhs.shape, strides, padding) if simple else None
  if pads is None:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, precision=precision,
                                    **kwargs)
  return _conv_cpu(lhs, rhs, strides, pads)


def _explicit_padding(x_shape, kernel_shape, strides, padding):
  """((top, bottom), (left, right)), or None if not expressible that way."""
  if isinstance(padding, str):
    return tuple(tuple(int(p) for p in pair) for pair in
                 lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], strides, padding))
  if len(padding) != 2:
    return None
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return pads if min(min(p) for p in pads) >= 0 else None


def _is_nhwc(dimension_numbers, ndim) -> bool:
  if dimension_numbers is None:
    return False
  return lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers) == \
      lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, _NHWC)


def _lax_conv(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_cpu(x, w, strides, pads):
  if x.shape[-1] <= _FEW_CHANNELS and strides == (1, 1):
    return _shifted_multiply_conv(x, w, pads)
  return _lax_conv(x, w, strides, pads)


def _conv_cpu_forward(x, w, strides, pads):
  return _conv_cpu(x, w, strides, pads), (x, w)


def _conv_cpu_backward(strides, pads, residuals, dy):
  x, w = residuals
  if strides == (1, 1):
    dx = _input_gradient(dy, w, pads, x.shape)
  else:  # XLA's transposed convolution.
    dx = jax.vjp(lambda x: _lax_conv(x, w, strides, pads), x)[1](dy)[0]
  return dx, _kernel_gradient(x, dy, strides, pads, w.shape)


_conv_cpu.defvjp(_conv_cpu_forward, _conv_cpu_backward)


def _shifted_multiply_conv(x, w, pads):
  """sum over kernel offsets (i, j) and input channels c of x[.., i:, j:, c] * w[i, j, c]."""
  kh, kw, cin, _ = w.shape
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  out = None
  for i in range(kh):
    for j in range(kw):
      for c in range(cin):
        term = x[:, i:i + height, j:j + width, c:c + 1] * w[i, j, c]
        out = term if out is None else out + term
  return out


def _kernel_gradient(x, dy, strides, pads, kernel_shape):
  """dW[i, j, c, o] = sum over b, h, w of x_padded[b, s*h + i, s*w + j, c] * dy[b, h, w, o].

  Written as a plain NHWC convolution with the batch as the contracted feature
  axis, so XLA:CPU runs it as a canonical convolution everywhere (its own
  autodiff emits a layout that runs ~10x slower inside loops such as `lax.scan`).
  """
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  grad = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1),
                                  "VALID", rhs_dilation=strides, dimension_numbers=_NHWC)
  # With a stride, rows and columns past the last window's reach come out too: drop them.
  return grad[:, :kernel_shape[0], :kernel_shape[1]].transpose(1, 2, 0, 3)


def _input_gradient(dy, w, pads, x_shape):
  """The transpose of im2col: (dy @ W^T) split by kernel offset, padded back and summed."""
  kh, kw, cin, cout = w.shape
  batch, height, width, _ = dy.shape
  per_offset = jnp.einsum("bhwo,ko->bhwk", dy, w.reshape(kh * kw * cin, cout))
  per_offset = per_offset.reshape(batch, height, width, kh * kw, cin)
  padded_h, padded_w = height + kh - 1, width + kw - 1
  dx = None
  for i in range(kh):
    for j in range(kw):
      term = jnp.pad(per_offset[:, :, :, i * kw + j, :],
                     ((0, 0), (i, padded_h - height - i), (j, padded_w - width - j), (0, 0)))
      dx = term if dx is None else dx + term
  (top, _), (left, _) = pads
  return dx[:, top:top + x_shape[1], left:left + x_shape[2], :]


# nnx.Conv with this lowering: the zoo's convolution layer (same parameters and results).
Conv = functools.partial(nnx.Conv, conv_general_dilated=conv_general_dilated)
