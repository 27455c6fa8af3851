"""XLA options the training and evaluation steps are compiled with.

On the CPU, XLA hands convolutions, matrix products and reductions to a
kernel library (YNNPACK) by default. Its convolutions are 2-5x slower than
XLA's own (Eigen) for the small-channel layers of LeNet-5 and ResNet-20, while
its products and reductions are the faster choice (measured on a 2-core CPU;
see experiments/README.md). `options()` keeps the library for those two only.

Pass them to your own `jax.jit` to get the same code:
  step = jax.jit(train_step, donate_argnums=0, compiler_options=jaxlearn.compiler.options())
"""

import functools

import jax
import jax.numpy as jnp

_CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type":
        "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}
# For programs that run once (building the initial state): LLVM's optimisations
# take longer than they save (LeNet-5's initialisers: 2.5 s to compile, 1.0 s without).
_CPU_RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0}


@functools.cache
def options(backend: str | None = None) -> dict:
  """The compiler options for `backend` (default: JAX's); empty where they do not apply.

  A JAX whose XLA lacks an option compiles without it rather than failing.
  """
  return _if_cpu_and_accepted(_CPU_OPTIONS, backend)


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
