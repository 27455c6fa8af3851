"""The first models of the learning path: a linear map, and a two-layer binary classifier."""

from flax import nnx
import jax


class LinearRegression(nnx.Module):
  """y = x W + b: one neuron (1 -> 1) by default, or any general linear model.

  Trained with MSE it is least-squares regression; its `linear.kernel` and
  `linear.bias` are the fitted weights.
  """

  def __init__(self, in_features: int = 1, out_features: int = 1, *, rngs: nnx.Rngs):
    self.expected_input = f"{in_features} values per example (any shape; flattened)"
    self.linear = nnx.Linear(in_features, out_features, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del train, rngs
    return self.linear(x.reshape(x.shape[0], -1))


class SimpleClassifier(nnx.Module):
  """2 -> 4 (ReLU) -> 1: a binary classifier's logit.

  The sigmoid that turns the logit into a probability lives in the loss
  (binary cross-entropy from logits, which is numerically stable) and in the
  binary task's metrics; apply `jax.nn.sigmoid` to the output for probabilities.
  """

  def __init__(self, in_features: int = 2, hidden: int = 4, num_classes: int = 1, *,
               rngs: nnx.Rngs):
    self.expected_input = f"{in_features} values per example (any shape; flattened)"
    self.hidden = nnx.Linear(in_features, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del train, rngs
    return self.out(nnx.relu(self.hidden(x.reshape(x.shape[0], -1))))
