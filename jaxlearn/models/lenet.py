"""LeNet-5 (LeCun et al. 1998) with ReLU and average pooling."""

from flax import nnx
import jax



class LeNet5(nnx.Module):
  """conv 6@5x5 (pad 2) -> avg-pool -> conv 16@5x5 -> avg-pool -> conv 120@5x5 -> fc 84 -> fc.

  Takes NHWC images of 28x28 (MNIST); 61,706 parameters for 1 channel and 10 classes.
  """

  def __init__(self, num_classes: int = 10, in_channels: int = 1, *, rngs: nnx.Rngs):
    self.expected_input = f"images shaped (28, 28, {in_channels})"
    self.conv1 = nnx.Conv(in_channels, 6, (5, 5), padding=2, rngs=rngs)
    self.conv2 = nnx.Conv(6, 16, (5, 5), padding="VALID", rngs=rngs)
    self.conv3 = nnx.Conv(16, 120, (5, 5), padding="VALID", rngs=rngs)
    self.fc1 = nnx.Linear(120, 84, rngs=rngs)
    self.fc2 = nnx.Linear(84, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del train, rngs  # No dropout or batch norm.
    x = _avg_pool(nnx.relu(self.conv1(x)))
    x = _avg_pool(nnx.relu(self.conv2(x)))
    x = nnx.relu(self.conv3(x))
    x = x.reshape(x.shape[0], -1)
    return self.fc2(nnx.relu(self.fc1(x)))


def _avg_pool(x: jax.Array) -> jax.Array:
  return nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
