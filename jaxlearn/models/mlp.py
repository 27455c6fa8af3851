"""Multi-layer perceptrons: flatten -> [Linear -> (Batch/LayerNorm) -> ReLU -> (Dropout)] * n -> Linear."""

from collections.abc import Sequence

from flax import nnx
import jax

from jaxlearn.errors import ConfigError
from jaxlearn.models.dropout import Dropout

# config.model.activation: what follows each hidden layer (sigmoid or tanh for the classic
# networks whose gradients vanish with depth).
ACTIVATIONS = {"relu": nnx.relu, "sigmoid": nnx.sigmoid, "tanh": nnx.tanh, "gelu": nnx.gelu}


class MLP(nnx.Module):
  """An MLP classifier on flattened inputs (784 -> 128 -> 10 for MNIST by default).

  `batch_norm` puts BatchNorm (PyTorch's momentum 0.1, i.e. flax momentum 0.9)
  between each hidden layer and its ReLU, `layer_norm` a LayerNorm there
  instead; `dropout` follows each ReLU (or the `activation` named). Batch norm and dropout switch to
  inference behaviour (running statistics, no dropping) with `train=False`.
  """

  def __init__(self, num_classes: int = 10, in_features: int = 784,
               hidden: Sequence[int] = (128,), batch_norm: bool = False,
               layer_norm: bool = False, dropout: float = 0.0, activation: str = "relu", *,
               rngs: nnx.Rngs):
    if activation not in ACTIVATIONS:
      raise ConfigError(f"config.model.activation={activation!r}; choose one of "
                        f"{sorted(ACTIVATIONS)}.")
    if batch_norm and layer_norm:
      raise ConfigError("config.model: MLP takes batch_norm=True or layer_norm=True, not both.")
    self.expected_input = f"{in_features} values per example (any shape; flattened)"
    sizes = [in_features, *hidden]
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    if batch_norm:
      self.norms = nnx.List([nnx.BatchNorm(b, momentum=0.9, rngs=rngs) for b in hidden])
    elif layer_norm:
      self.norms = nnx.List([nnx.LayerNorm(b, rngs=rngs) for b in hidden])
    else:
      self.norms = nnx.List([])
    self.dropout = Dropout(dropout)
    self.activation = activation
    self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
    x = x.reshape(x.shape[0], -1)
    for i, layer in enumerate(self.hidden):
      x = layer(x)
      if self.norms:
        norm = self.norms[i]
        x = norm(x, use_running_average=not train) if isinstance(norm, nnx.BatchNorm) else norm(x)
      x = self.dropout(ACTIVATIONS[self.activation](x), deterministic=not train, rngs=rngs)
    return self.head(x)
