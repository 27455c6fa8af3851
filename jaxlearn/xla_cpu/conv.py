"""A 2-D convolution with gradients written out for XLA's CPU backend.

XLA:CPU runs small NHWC convolutions far below the machine's speed (LeNet-5's
first layer, 1 -> 6 channels, most of all), and the input gradient of every
layer goes through a slow generic transposed convolution. Measured per piece (see experiments/README.md), the
fastest correct pieces are:

- forward: `lax` convolution, except for stride-1 inputs with very few channels,
  where a sum of shifted, broadcast multiplies (one fused XLA loop) is far faster;
- kernel gradient: a plain convolution with the batch as the contracted axis,
  written out so that it keeps a layout XLA:CPU runs fast also inside a loop
  (the training loop runs chunks of steps as one `fori_loop`). With 16 or more
  input channels (a 64-byte row) and a kernel small next to the image (ResNet's
  blocks), the input goes in as the convolution's *kernel* operand instead, so
  its channels stay minor: moving the batch minor, as the first form must, is a
  strided gather into which XLA also fuses (and recomputes) the whole
  batch-norm/ReLU/residual chain that produced the input. Strided layers split
  the input into stride phases, each a stride-1 kernel gradient;
- input gradient: for stride 1 with few channels the transpose of im2col, i.e.
  one matmul `dy @ W^T` and the sum of the kernel-offset slices padded back into
  place (one fused loop); with many channels and a small kernel, a plain
  convolution of `dy` with the flipped kernel, for larger strides one such
  convolution per stride phase; `lax`'s transposed convolution otherwise.

`conv_general_dilated` has `lax.conv_general_dilated`'s signature and values;
undilated, ungrouped 2-D NHWC convolutions take the custom path, others go to
`lax`. The custom path is a `jax.custom_vjp`, so it has reverse-mode derivatives
only: `xla_cpu.with_cpu_kernels` puts it into the training loop's compiled steps,
never into the models themselves.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

# Inputs with at most this many channels use the shifted-multiply forward pass.
_FEW_CHANNELS = 3
# From this many input channels (one 64-byte row of float32) gradients keep channels minor.
_MANY_CHANNELS = 16
_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kwargs):
  """`lax.conv_general_dilated`, with gradients written out for the common cases."""
  strides = tuple(window_strides)
  simple = (lhs.ndim == 4
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
  channels_minor = _channels_minor(w.shape, dy.shape)
  if channels_minor and strides != (1, 1):
    dx = _strided_input_gradient_by_phases(dy, w, strides, pads, x.shape)
  elif channels_minor:
    dx = _input_gradient_by_flipped_conv(dy, w, pads)
  elif strides != (1, 1):  # XLA's transposed convolution.
    dx = jax.vjp(lambda x: _lax_conv(x, w, strides, pads), x)[1](dy)[0]
  else:
    dx = _input_gradient(dy, w, pads, x.shape)
  if channels_minor:
    dw = _kernel_gradient_channels_minor(x, dy, strides, pads, w.shape)
  else:
    dw = _kernel_gradient(x, dy, strides, pads, w.shape)
  return dx, dw


def _channels_minor(kernel_shape, dy_shape) -> bool:
  """Whether the gradients should keep channels minor: many input channels, and a kernel
  small next to the output (padding the output by the kernel at most doubles its area)."""
  kh, kw, cin, _ = kernel_shape
  height, width = dy_shape[1:3]
  return cin >= _MANY_CHANNELS and (height + kh - 1) * (width + kw - 1) <= 2 * height * width


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
  autodiff emits a layout that runs far slower inside loops such as `lax.scan`).
  """
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  grad = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1),
                                  "VALID", rhs_dilation=strides, dimension_numbers=_NHWC)
  # With a stride, rows and columns past the last window's reach come out too: drop them.
  return grad[:, :kernel_shape[0], :kernel_shape[1]].transpose(1, 2, 0, 3)


def _kernel_gradient_channels_minor(x, dy, strides, pads, kernel_shape):
  """dW with `x` as the convolution's kernel operand (channels minor), one stride phase at a time.

  With stride s, kernel offset i = s*a + p reads x_padded[s*(h + a) + p]: phase p of
  the padded input (every s-th row from p) meets kernel rows p, p + s, ... as a
  stride-1 convolution.
  """
  if strides == (1, 1):
    return _stride1_kernel_gradient_channels_minor(x, dy, pads, kernel_shape)
  kh, kw, cin, cout = kernel_shape
  (sh, sw), (oh, ow) = strides, dy.shape[1:3]
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  grad = jnp.zeros(kernel_shape, dy.dtype)
  for p in range(min(sh, kh)):
    rows = -(-(kh - p) // sh)
    for q in range(min(sw, kw)):
      cols = -(-(kw - q) // sw)
      phase = x[:, p::sh, q::sw, :][:, :oh + rows - 1, :ow + cols - 1, :]
      part = _stride1_kernel_gradient_channels_minor(phase, dy, ((0, 0), (0, 0)),
                                                     (rows, cols, cin, cout))
      grad = grad.at[p::sh, q::sw].set(part)
  return grad


def _stride1_kernel_gradient_channels_minor(x, dy, pads, kernel_shape):
  """dW[i, j] = sum over b, h, w of x[b, h + i - top, w + j - left] * dy[b, h, w]
  as a convolution of the padded `dy` (batch as feature) with `x` as the kernel.

  That convolution yields the kernel offsets in reverse order. Where `x` is
  larger than `dy`, `dy` is padded outside the convolution so that the kernel
  operand is never the larger one (XLA would swap the operands back and pick a
  slow loop); otherwise the convolution pads, saving the padding's transpose.
  """
  kh, kw = kernel_shape[:2]
  (top, _), (left, _) = pads
  dy_pads = ((kh - 1 - top, top + x.shape[1] - dy.shape[1]),
             (kw - 1 - left, left + x.shape[2] - dy.shape[2]))
  if x.shape[1] * x.shape[2] > dy.shape[1] * dy.shape[2]:
    dy = lax.pad(dy, jnp.zeros((), dy.dtype), ((0, 0, 0), (*dy_pads[0], 0), (*dy_pads[1], 0),
                                               (0, 0, 0)))
    dy_pads = ((0, 0), (0, 0))
  # Canonical NHWC/HWIO operands, transposed here (XLA's own layout choice for these
  # dimension numbers runs far slower inside a loop).
  grad = lax.conv_general_dilated(dy.transpose(3, 1, 2, 0), x.transpose(1, 2, 0, 3), (1, 1),
                                  dy_pads, dimension_numbers=_NHWC)
  return grad[:, ::-1, ::-1, :].transpose(1, 2, 3, 0)


def _input_gradient_by_flipped_conv(dy, w, pads):
  """dx for stride 1: `dy` convolved with the kernel flipped in space, in/out swapped."""
  kh, kw = w.shape[:2]
  (top, bottom), (left, right) = pads
  return _conv_with_flipped_kernel(
      dy, w, ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right)))


def _conv_with_flipped_kernel(dy, w, dy_pads):
  return lax.conv_general_dilated(dy, w[::-1, ::-1].transpose(0, 1, 3, 2), (1, 1), dy_pads,
                                  dimension_numbers=_NHWC)


def _strided_input_gradient_by_phases(dy, w, strides, pads, x_shape):
  """dx for stride s, one stride phase of the padded input at a time, then interleaved.

  Row s*n + p of the padded input's gradient is sum over a of dy[n - a] * w[s*a + p]:
  a stride-1 convolution of `dy` with the flipped sub-kernel w[p::s] (XLA's own
  transposed convolution dilates `dy` with zeros instead and runs several times slower).
  """
  kh, kw, cin, _ = w.shape
  (sh, sw), (oh, ow) = strides, dy.shape[1:3]
  (top, bottom), (left, right) = pads
  rows, cols = -(-(x_shape[1] + top + bottom) // sh), -(-(x_shape[2] + left + right) // sw)
  phase_rows = []
  for p in range(sh):
    phases = []
    for q in range(sw):
      kernel = w[p::sh, q::sw]
      if p >= kh or q >= kw:  # No kernel offset lands on this phase.
        phases.append(jnp.zeros((dy.shape[0], rows, cols, cin), dy.dtype))
        continue
      ka, kb = kernel.shape[:2]
      phases.append(_conv_with_flipped_kernel(dy, kernel,
                                              ((ka - 1, rows - oh), (kb - 1, cols - ow))))
    phase_rows.append(jnp.stack(phases, axis=3))  # (batch, rows, cols, sw, cin)
  dx = jnp.stack(phase_rows, axis=2).reshape(dy.shape[0], rows * sh, cols * sw, cin)
  return dx[:, top:top + x_shape[1], left:left + x_shape[2]]


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
