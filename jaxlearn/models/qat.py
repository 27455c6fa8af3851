"""Quantization-aware training: `config.quantization = "int8_qat"`, on qwix.

With it every dense and convolution layer trains as it will later run once
quantized by `python -m jaxlearn.quantize --mode=int8_weights`: int8 kernels
with one scale per output channel, and int8 inputs with one scale per example
measured as they come. The backward pass sees through the rounding
(straight-through estimator), so the weights learn to keep their accuracy at
int8. Products between two activations (attention scores) stay float, as in
`jaxlearn.quantize`. qwix is an extra: `pip install 'jaxlearn[quantization]'`.
"""

from flax import nnx
import jax.numpy as jnp

from jaxlearn.errors import ConfigError
# Module paths whose products are left float: the attention scores and their weighted sum.
FLOAT_MODULES = r"(.*/)?attention"


def quantize_for_training(model: nnx.Module, quantization: str) -> nnx.Module:
  """`model` whose kernel products compute on fake-quantized int8 operands (a copy)."""
  if quantization == "none":
    return model
  try:
    import qwix  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ConfigError("config.quantization='int8_qat' needs qwix: "
                      "pip install 'jaxlearn[quantization]'.") from e
  rules = [qwix.QtRule(module_path=FLOAT_MODULES),
           qwix.QtRule(module_path=".*", weight_qtype=jnp.int8, act_qtype=jnp.int8,
                       act_static_scale=False)]
  # Dynamic scales keep no statistics, so the model needs no example call to set them up.
  return qwix.quantize_model(model, qwix.QtProvider(rules), skip_nnx_init=True)
