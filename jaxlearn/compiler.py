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


@functools.cache
def options(backend: str | None = None) -> dict[str, str]:
  """The compiler options for `backend` (default: JAX's); empty where they do not apply.

  A JAX whose XLA lacks an option compiles without it rather than failing.
  """
  backend = backend or jax.default_backend()
  if backend != "cpu" or not _accepted(_CPU_OPTIONS):
    return {}
  return dict(_CPU_OPTIONS)


def _accepted(compiler_options: dict) -> bool:
  try:
    jax.jit(jnp.sin, compiler_options=compiler_options).lower(jnp.zeros(2)).compile()
  except Exception:  # pylint: disable=broad-except  # XLA names unknown options in its error.
    return False
  return True
