"""Weight initialisation per layer kind (`config.init`).

The schemes are PyTorch's `torch.nn.init` ones, built from `jax.nn.initializers`:
the *_normal schemes draw from an untruncated normal, as PyTorch does.
Parameters copied from another run's checkpoint (`config.init.from_checkpoint`)
are `jaxlearn.runs.checkpoint.load_matching_params`.
"""

from flax import nnx
import jax

from jaxlearn.errors import ConfigError

_init = jax.nn.initializers


def _schemes(normal_stddev: float) -> dict:
  return {
      "zeros": _init.zeros,
      "normal": _init.normal(normal_stddev),
      "xavier_uniform": _init.variance_scaling(1.0, "fan_avg", "uniform"),
      "xavier_normal": _init.variance_scaling(1.0, "fan_avg", "normal"),
      "kaiming_uniform": _init.variance_scaling(2.0, "fan_in", "uniform"),
      "kaiming_normal": _init.variance_scaling(2.0, "fan_in", "normal"),
      "lecun_uniform": _init.variance_scaling(1.0, "fan_in", "uniform"),
      "lecun_normal": _init.variance_scaling(1.0, "fan_in", "normal"),
  }


# The names config.init.<kind> takes ("default": the layer's own initialisation).
SCHEMES = ("default", *_schemes(1.0))

# Layer kind -> (the nnx layer classes, the weight attribute the scheme sets).
LAYER_KINDS = {
    "linear": ((nnx.Linear, nnx.LinearGeneral), "kernel"),
    "conv": ((nnx.Conv, nnx.ConvTranspose), "kernel"),
    "embed": ((nnx.Embed,), "embedding"),
}


def initialise(model: nnx.Module, init_config, key: jax.Array) -> nnx.Module:
  """Re-draws each layer kind's weights with its configured scheme (biases become zero).

  Layers whose kind is set to "default" keep their own initialisation. Changes
  `model` in place and returns it.

  Example:
    initialise(model, ml_collections.ConfigDict({"linear": "kaiming_normal", "conv": "default",
               "embed": "default", "normal_stddev": 0.01}), jax.random.key(0))
  """
  schemes = _schemes(init_config.normal_stddev)
  for kind, (classes, weight_name) in LAYER_KINDS.items():
    name = init_config[kind]
    if name == "default":
      continue
    if name not in schemes:
      raise ConfigError(f"Unknown init scheme {name!r} in config.init.{kind}; choose 'default' "
                        f"or one of {sorted(schemes)}.")
    for path, module in nnx.iter_modules(model):
      if not isinstance(module, classes):
        continue
      key, layer_key = jax.random.split(key)
      weight = getattr(module, weight_name)
      shape, dtype = weight.get_value().shape, weight.get_value().dtype
      weight.set_value(schemes[name](layer_key, shape, dtype))
      bias = getattr(module, "bias", None)
      if bias is not None:
        bias.set_value(jax.numpy.zeros_like(bias.get_value()))
  return model
