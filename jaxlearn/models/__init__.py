"""The model zoo: Flax NNX modules, built by name from `config.model`.

Every model is called as `model(x, train=..., rngs=...)` and used by the
training step as a pure function (split once into graphdef + state). Its
`expected_input` says in words what one example must look like; error
messages quote it.
"""

import inspect

from flax import nnx

from jaxlearn.errors import ConfigError
from jaxlearn.models.cnn import SimpleCNN
from jaxlearn.models.lenet import LeNet5
from jaxlearn.models.linear import LinearRegression, SimpleClassifier
from jaxlearn.models.mlp import MLP
from jaxlearn.models.resnet import BasicBlock, ResNet, ResNet18, ResNet20, ResNet56
from jaxlearn.models.text import (
    EmbeddingBagMLP,
    GRUClassifier,
    LSTMClassifier,
    RNNClassifier,
    SimpleRNNClassifier,
)
from jaxlearn.models.transformer import DigitTransformer

MODELS = {
    "linear_regression": LinearRegression,
    "simple_classifier": SimpleClassifier,
    "mlp": MLP,
    "simple_cnn": SimpleCNN,
    "lenet5": LeNet5,
    "resnet": ResNet,
    "resnet18": ResNet18,
    "resnet20": ResNet20,
    "resnet56": ResNet56,
    "digit_transformer": DigitTransformer,
    "rnn": RNNClassifier,
    "gru": GRUClassifier,
    "lstm": LSTMClassifier,
    "simple_rnn": SimpleRNNClassifier,
    "embedding_bag": EmbeddingBagMLP,
}


def create_model(model_config, rngs: nnx.Rngs, data_dims: dict | None = None) -> nnx.Module:
  """Builds `MODELS[model_config.name]` with the config's other fields as arguments.

  `data_dims` (e.g. {"in_channels": 1, "num_classes": 10}, see
  `jaxlearn.data.input_dims`) fills the arguments the model takes that the
  config does not set.

  Example:
    model = create_model(ml_collections.ConfigDict({"name": "lenet5"}), nnx.Rngs(0))
  """
  kwargs = dict(model_config)
  name = kwargs.pop("name")
  if name not in MODELS:
    raise ConfigError(f"Unknown model {name!r} in config.model.name; choose one of "
                      f"{sorted(MODELS)}.")
  cls = MODELS[name]
  accepted = inspect.signature(cls.__init__).parameters
  unknown = sorted(set(kwargs) - set(accepted))
  if unknown:
    raise ConfigError(f"config.model has {unknown}, which {cls.__name__} does not take; its "
                      f"arguments are {sorted(set(accepted) - {'self', 'rngs'})}.")
  from_data = {k: v for k, v in (data_dims or {}).items() if k in accepted and k not in kwargs}
  return cls(**kwargs, **from_data, rngs=rngs)
