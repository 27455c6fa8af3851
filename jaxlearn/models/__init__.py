"""The model zoo: Flax NNX modules, built by name from `config.model`.

Every model is called as `model(x, train=..., rngs=...)` and used by the
training step as a pure function (split once into graphdef + state).
"""

import inspect

from flax import nnx

from jaxlearn.errors import ConfigError
from jaxlearn.models.lenet import LeNet5
from jaxlearn.models.mlp import MLP

MODELS = {
    "mlp": MLP,
    "lenet5": LeNet5,
}


def create_model(model_config, rngs: nnx.Rngs) -> nnx.Module:
  """Builds `MODELS[model_config.name]` with the config's other fields as arguments.

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
  return cls(**kwargs, rngs=rngs)
