"""XLA options for the programs the training loop compiles on a CPU.

On the CPU, XLA hands convolutions, matrix products and reductions to a kernel
library (YNNPACK) by default. Its convolutions are slower than XLA's own
(Eigen) for the small-channel layers of LeNet-5 and ResNet-20, while its
products are the faster choice, and so are its reductions in a training step.
In a forward pass alone, though, its reductions absorb the layers that feed
them (LeNet-5's first convolution into the pooling after it) and run them
slower. The figures are in experiments/README.md.
"""

import functools

from absl import logging
import jax
import jax.numpy as jnp

YNN_FUSIONS = "xla_cpu_experimental_ynn_fusion_type"
TRAIN = {YNN_FUSIONS: "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
EVAL = {YNN_FUSIONS: "LIBRARY_FUSION_TYPE_DOT"}
# Programs that run once (building the initial state): LLVM's optimisations take
# longer than they save.
RUN_ONCE = {"xla_backend_optimization_level": 0}


def accepted(options: dict) -> dict:
  """The options this XLA accepts; each one it rejects is logged once and left out."""
  return {name: value for name, value in options.items() if _accepts(name, value)}


@functools.cache
def _accepts(name: str, value) -> bool:
  try:
    jax.jit(jnp.sin, compiler_options={name: value}).lower(jnp.zeros(2)).compile()
  except Exception as e:  # pylint: disable=broad-except  # XLA names unknown options in its error.
    logging.warning("XLA does not accept the CPU option %s=%s (%s: %s); compiling without it, "
                    "so CPU training may be slower. jaxlearn.xla_cpu needs updating for this "
                    "XLA.", name, value, type(e).__name__, str(e).splitlines()[0][:200])
    return False
  return True
