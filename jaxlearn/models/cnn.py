"""A plain convolutional classifier: [conv 3x3 -> ReLU -> max-pool 2x2] * n -> (fc) -> fc."""

from collections.abc import Sequence

from flax import nnx
import jax

from jaxlearn.models.dropout import Dropout


class SimpleCNN(nnx.Module):
  """conv 32@3x3 -> max-pool -> fc 10 by default (63,050 parameters on 28x28x1).

  `channels` adds conv blocks (each halves the image), `hidden` a fully
  connected ReLU layer before the output, `dropout` drops its inputs in training.
  """

  def __init__(self, num_classes: int = 10, in_channels: int = 1,
               image_size: Sequence[int] = (28, 28), channels: Sequence[int] = (32,),
               hidden: int = 0, dropout: float = 0.0, *, rngs: nnx.Rngs):
    self.expected_input = f"images shaped ({image_size[0]}, {image_size[1]}, {in_channels})"
    sizes = [in_channels, *channels]
    self.convs = nnx.List([nnx.Conv(a, b, (3, 3), padding="SAME", rngs=rngs)
                           for a, b in zip(sizes, sizes[1:])])
    height, width = image_size
    for _ in channels:
      height, width = height // 2, width // 2
    features = height * width * sizes[-1]
    self.hidden = nnx.Linear(features, hidden, rngs=rngs) if hidden else None
    self.dropout = Dropout(dropout)
    self.head = nnx.Linear(hidden or features, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
    for conv in self.convs:
      x = nnx.max_pool(nnx.relu(conv(x)), (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    if self.hidden is not None:
      x = nnx.relu(self.hidden(self.dropout(x, deterministic=not train, rngs=rngs)))
    return self.head(self.dropout(x, deterministic=not train, rngs=rngs))
