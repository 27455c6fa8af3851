"""CPU kernels for the steps the training loop compiles: one switch, one place.

XLA:CPU runs small-channel convolutions, their gradients and max pooling's
gradient far below the machine's speed. This package holds everything jaxlearn
does about that: gradients written out for XLA:CPU (`conv`), a reshape form of
non-overlapping max pooling (`pooling`), a rewrite that puts both into a
function's trace (`rewrite`) and compiler options (`options`).

The training loop turns it on, with `config.cpu_kernels` (default True), for
the steps it compiles on a CPU; models stay plain Flax, so forward-mode
derivatives, evaluation, export and your own `jax.jit` never see any of it.
To use it in your own loop on a CPU:

  step = jax.jit(functools.partial(train_step, model_transform=xla_cpu.with_cpu_kernels),
                 compiler_options=xla_cpu.compiler_options("train", "cpu"))
"""

from absl import logging

from jaxlearn.xla_cpu import options
from jaxlearn.xla_cpu.rewrite import with_cpu_kernels

__all__ = ["with_cpu_kernels", "compiler_options", "enabled"]

_KINDS = {"train": options.TRAIN, "eval": options.EVAL, "run_once": options.RUN_ONCE}


def enabled(requested: bool, platform: str) -> bool:
  """Whether the CPU kernels apply: requested (config.cpu_kernels) and compiling for a CPU."""
  active = bool(requested) and platform == "cpu"
  if active:
    logging.info("CPU kernels on (jaxlearn.xla_cpu; config.cpu_kernels=False turns them off).")
  return active


def compiler_options(kind: str, platform: str) -> dict:
  """XLA options for a program of `kind` ('train', 'eval', 'run_once') on `platform`.

  Empty off the CPU; an option this XLA rejects is logged and left out.
  """
  if platform != "cpu":
    return {}
  return options.accepted(_KINDS[kind])
