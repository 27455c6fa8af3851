"""Residual networks (He et al. 2016) from `BasicBlock`s: ResNet-18 and the CIFAR ResNet-20/56.

Batch norm follows every convolution (PyTorch's momentum 0.1) and uses its
running statistics with `train=False`. A block whose stride or width changes
adds a 1x1 projection (+ batch norm) on its shortcut.
"""

from collections.abc import Sequence

from flax import nnx
import jax

from jaxlearn.errors import ConfigError


def _batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
  return nnx.BatchNorm(features, momentum=0.9, rngs=rngs)


class BasicBlock(nnx.Module):
  """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the (projected) input, -> ReLU."""

  def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(in_channels, out_channels, (3, 3), strides=stride, padding=1,
                      use_bias=False, rngs=rngs)
    self.bn1 = _batch_norm(out_channels, rngs)
    self.conv2 = nnx.Conv(out_channels, out_channels, (3, 3), padding=1, use_bias=False, rngs=rngs)
    self.bn2 = _batch_norm(out_channels, rngs)
    if stride != 1 or in_channels != out_channels:
      self.projection = nnx.Conv(in_channels, out_channels, (1, 1), strides=stride, use_bias=False,
                             rngs=rngs)
      self.projection_bn = _batch_norm(out_channels, rngs)
    else:
      self.projection = self.projection_bn = None

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    frozen = not train
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=frozen))
    y = self.bn2(self.conv2(y), use_running_average=frozen)
    if self.projection is not None:
      x = self.projection_bn(self.projection(x), use_running_average=frozen)
    return nnx.relu(x + y)


class ResNet(nnx.Module):
  """A stem, stages of BasicBlocks (the first of each later stage strides 2), pool, fc.

  `small_images` (CIFAR-sized inputs) uses a 3x3 stride-1 stem without max-pool;
  otherwise the ImageNet stem (7x7 stride 2, then 3x3 max-pool stride 2).
  """

  def __init__(self, blocks: Sequence[int] = (2, 2, 2, 2), widths: Sequence[int] = (64, 128, 256, 512),
               num_classes: int = 10, in_channels: int = 3, small_images: bool = True, *,
               rngs: nnx.Rngs):
    if len(blocks) != len(widths):
      raise ConfigError(f"ResNet: blocks {tuple(blocks)} and widths {tuple(widths)} must have "
                       "one entry per stage.")
    self.expected_input = f"images shaped (height, width, {in_channels})"
    self.small_images = small_images
    kernel, stride = ((3, 3), 1) if small_images else ((7, 7), 2)
    self.stem = nnx.Conv(in_channels, widths[0], kernel, strides=stride, padding="SAME",
                     use_bias=False, rngs=rngs)
    self.stem_bn = _batch_norm(widths[0], rngs)
    layers, channels = [], widths[0]
    for stage, (count, width) in enumerate(zip(blocks, widths)):
      for i in range(count):
        layers.append(BasicBlock(channels, width, 2 if stage and not i else 1, rngs=rngs))
        channels = width
    self.blocks = nnx.List(layers)
    self.head = nnx.Linear(channels, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del rngs  # No dropout.
    x = nnx.relu(self.stem_bn(self.stem(x), use_running_average=not train))
    if not self.small_images:
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    for block in self.blocks:
      x = block(x, train=train)
    return self.head(x.mean(axis=(1, 2)))


class ResNet18(ResNet):
  """ResNet-18: 4 stages of 2 blocks, widths 64-512 (11,173,962 parameters for CIFAR-10)."""

  def __init__(self, num_classes: int = 10, in_channels: int = 3, small_images: bool = True, *,
               rngs: nnx.Rngs):
    super().__init__((2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels, small_images,
                     rngs=rngs)


class CifarResNet(ResNet):
  """The CIFAR family: 3 stages of n blocks, widths 16-32-64 (depth 6n + 2)."""

  def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, *,
               rngs: nnx.Rngs):
    if depth < 8 or (depth - 2) % 6:
      raise ConfigError(f"A CIFAR ResNet's depth is 6n + 2 (20, 32, 44, 56, 110), not {depth}.")
    n = (depth - 2) // 6
    super().__init__((n, n, n), (16, 32, 64), num_classes, in_channels, True, rngs=rngs)


class ResNet20(CifarResNet):
  """ResNet-20 for CIFAR: 3 x 3 blocks."""

  def __init__(self, num_classes: int = 10, in_channels: int = 3, *, rngs: nnx.Rngs):
    super().__init__(20, num_classes, in_channels, rngs=rngs)


class ResNet56(CifarResNet):
  """ResNet-56 for CIFAR: 3 x 9 blocks."""

  def __init__(self, num_classes: int = 10, in_channels: int = 3, *, rngs: nnx.Rngs):
    super().__init__(56, num_classes, in_channels, rngs=rngs)
