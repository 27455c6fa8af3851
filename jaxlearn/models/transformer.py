"""A Transformer encoder that classifies images from a sequence of patches or rows."""

from collections.abc import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jaxlearn.errors import ConfigError
from jaxlearn.models.dropout import Dropout

TOKENS = ("patches", "rows")
POSITIONS = ("learned", "sinusoidal")


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
  """(length, dim) sin/cos position codes of "Attention is all you need"."""
  position = np.arange(length)[:, None]
  frequency = np.exp(-np.log(10000.0) * np.arange(0, dim, 2) / dim)
  codes = np.zeros((length, dim), np.float32)
  codes[:, 0::2] = np.sin(position * frequency)
  codes[:, 1::2] = np.cos(position * frequency)[:, :dim // 2]
  return codes


class EncoderBlock(nnx.Module):
  """Pre-LayerNorm: x + attention(LN(x)), then x + MLP(LN(x)); dropout on each branch."""

  def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float, *, rngs: nnx.Rngs):
    self.attention_norm = nnx.LayerNorm(dim, rngs=rngs)
    # Dropout keys come with each call (train_step's per-step key), not stored here.
    self.attention = nnx.MultiHeadAttention(heads, dim, dropout_rate=dropout, decode=False,
                                            keep_rngs=False, rngs=rngs)
    self.mlp_norm = nnx.LayerNorm(dim, rngs=rngs)
    self.mlp_in = nnx.Linear(dim, mlp_dim, rngs=rngs)
    self.mlp_out = nnx.Linear(mlp_dim, dim, rngs=rngs)
    self.dropout = Dropout(dropout)

  def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
    frozen = not train
    y = self.attention(self.attention_norm(x), deterministic=frozen, rngs=rngs)
    x = x + self.dropout(y, deterministic=frozen, rngs=rngs)
    y = self.mlp_out(nnx.gelu(self.mlp_in(self.mlp_norm(x))))
    return x + self.dropout(y, deterministic=frozen, rngs=rngs)


class DigitTransformer(nnx.Module):
  """Image -> tokens (p x p patches, or pixel rows) -> linear embedding + [CLS] + positions
  -> `depth` pre-LN encoder blocks -> LN -> classifier on the [CLS] token.
  """

  def __init__(self, num_classes: int = 10, in_channels: int = 1,
               image_size: Sequence[int] = (28, 28), tokens: str = "patches", patch_size: int = 7,
               dim: int = 64, depth: int = 4, heads: int = 4, mlp_dim: int = 128,
               dropout: float = 0.1, position: str = "learned", *, rngs: nnx.Rngs):
    if tokens not in TOKENS or position not in POSITIONS:
      raise ConfigError(f"DigitTransformer: tokens={tokens!r} must be one of {TOKENS} and "
                        f"position={position!r} one of {POSITIONS}.")
    height, width = image_size
    if tokens == "patches" and (height % patch_size or width % patch_size):
      raise ConfigError(f"DigitTransformer: patch_size={patch_size} must divide the image size "
                        f"{height}x{width}.")
    if dim % heads:
      raise ConfigError(f"DigitTransformer: dim={dim} must be divisible by heads={heads}.")
    self.expected_input = f"images shaped ({height}, {width}, {in_channels})"
    self.tokens, self.patch_size = tokens, patch_size
    if tokens == "patches":
      length, token_features = (height // patch_size) * (width // patch_size), \
          patch_size * patch_size * in_channels
    else:
      length, token_features = height, width * in_channels
    self.embed = nnx.Linear(token_features, dim, rngs=rngs)
    self.cls_token = nnx.Param(jnp.zeros((1, 1, dim)))
    if position == "learned":
      self.positions = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, length + 1, dim)))
    else:
      self.positions = nnx.Variable(jnp.asarray(sinusoidal_positions(length + 1, dim))[None])
    self.dropout = Dropout(dropout)
    self.blocks = nnx.List([EncoderBlock(dim, heads, mlp_dim, dropout, rngs=rngs)
                            for _ in range(depth)])
    self.norm = nnx.LayerNorm(dim, rngs=rngs)
    self.head = nnx.Linear(dim, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
    x = self.embed(self.to_tokens(x))
    cls = jnp.broadcast_to(self.cls_token.get_value(), (x.shape[0], 1, x.shape[-1]))
    x = jnp.concatenate([cls.astype(x.dtype), x], axis=1) + self.positions.get_value()
    x = self.dropout(x, deterministic=not train, rngs=rngs)
    for block in self.blocks:
      x = block(x, train=train, rngs=rngs)
    return self.head(self.norm(x[:, 0]))

  def to_tokens(self, images: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, tokens, features): patches in row-major order, or rows."""
    n, height, width, channels = images.shape
    if self.tokens == "rows":
      return images.reshape(n, height, width * channels)
    p = self.patch_size
    patches = images.reshape(n, height // p, p, width // p, p, channels)
    return patches.transpose(0, 1, 3, 2, 4, 5).reshape(n, -1, p * p * channels)
