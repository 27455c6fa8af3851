"""XLA options the training and evaluation steps are compiled with.

On the CPU, XLA hands convolutions, matrix products and reductions to a
kernel library (YNNPACK) by default. Its convolutions are 2-5x slower than
XLA's own (Eigen) for the small-channel layers of LeNet-5 and ResNet-20, while
its products are the faster choice, and so are its reductions in a training
step (the MLP's step: 0.84 -> 0.64 ms). In a forward pass alone, though, its
reductions absorb the layers that feed them (LeNet-5's first convolution into
the pooling after it) and run them 5x slower. Measured on a 2-core CPU; see
experiments/README.md.

Pass them to your own `jax.jit` to get the same code:
  step = jax.jit(train_step, donate_argnums=0,
                 compiler_options=jaxlearn.compiler.train_options())
"""

import functools

import jax
import jax.numpy as jnp

_YNN_FUSIONS = "xla_cpu_experimental_ynn_fusion_type"
_CPU_TRAIN_OPTIONS = {_YNN_FUSIONS: "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
_CPU_EVAL_OPTIONS = {_YNN_FUSIONS: "LIBRARY_FUSION_TYPE_DOT"}
# For programs that run once (building the initial state): LLVM's optimisations
# take longer than they save (LeNet-5's initialisers: 2.5 s to compile, 1.0 s without).
_CPU_RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0}


@functools.cache
def train_options(backend: str | None = None) -> dict:
  """Options for training steps on `backend` (default: JAX's); empty where they do not apply.

  A JAX whose XLA lacks an option compiles without it rather than failing.
  """
  return _if_cpu_and_accepted(_CPU_TRAIN_OPTIONS, backend)


@functools.cache
def eval_options(backend: str | None = None) -> dict:
  """Options for evaluation and inference (forward passes only)."""
  return _if_cpu_and_accepted(_CPU_EVAL_OPTIONS, backend)


@functools.cache
def run_once_options(backend: str | None = None) -> dict:
  """Options for a program that runs once, where compile time is all that counts."""
  return _if_cpu_and_accepted(_CPU_RUN_ONCE_OPTIONS, backend)


def _if_cpu_and_accepted(compiler_options: dict, backend: str | None) -> dict:
  if (backend or jax.default_backend()) != "cpu" or not _accepted(compiler_options):
    return {}
  return dict(compiler_options)


def _accepted(compiler_options: dict) -> bool:
  try:
    jax.jit(jnp.sin, compiler_options=compiler_options).lower(jnp.zeros(2)).compile()
  except Exception:  # pylint: disable=broad-except  # XLA names unknown options in its error.
    return False
  return True
