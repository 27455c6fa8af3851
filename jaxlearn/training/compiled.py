"""The programs a run compiles: chunks of train steps and the eval step, and the compile cache."""

import os

from absl import logging
import jax

from jaxlearn import xla_cpu
from jaxlearn.core import parallel
from jaxlearn.core.step import eval_step, train_steps
from jaxlearn.core.tasks import CLASSIFICATION


def compile_steps(mesh, task=CLASSIFICATION, *, skip_nonfinite: bool = False, augment=None,
                  steps_per_call: int = 1, cpu_kernels: bool = True,
                  static_count: bool | None = None, loss_fn=None, state_sharding=None,
                  host_batches: bool = False):
  """Compiled `train_steps` (chunks of up to `steps_per_call` steps) and `eval_step`.

  Both take their batches from data already on the devices, so a chunk is one
  dispatch with no host-to-device copies; the state is donated so XLA updates
  it in place. `augment(images, key)` (see jaxlearn.data.augment) runs inside
  the train step. The train function is called as
  `train_chunk(state, epoch, first, count)` for steps first..first+count-1 of
  a `pipeline.Epoch`, the eval one as `eval_batch(state, batches, i)`. `loss_fn`
  replaces the task's loss in training (e.g. `jaxlearn.training.distill.make_loss`).

  On a CPU mesh, `cpu_kernels` compiles both with `jaxlearn.xla_cpu`.
  `state_sharding` (see `parallel.state_sharding`; default replicated) is how
  the returned state is laid out over the devices. With `host_batches` the
  train function takes the chunk's own batches instead of an Epoch, stacked
  (steps_per_call, batch, ...) as `streaming.Stream.take` gives them.

  `static_count` compiles one program per chunk length instead of one for all
  (default: on GPUs and TPUs, not on the CPU). A GPU runs a loop of unknown
  length by copying its condition to the host after every step, a sync per
  step; with the length known it queues the steps back to back. On the CPU the
  condition is read where it is computed, at no cost, and one program compiles once.
  """
  replicated = parallel.replicated(mesh)
  platform = mesh.devices.flat[0].platform
  if static_count is None:
    static_count = platform != "cpu"
  cpu = xla_cpu.enabled(cpu_kernels, platform)
  transform = xla_cpu.with_cpu_kernels if cpu else None
  options = lambda kind: xla_cpu.compiler_options(kind, platform) if cpu else {}

  def train_chunk(state, epoch, first, count):
    batch_at = ((lambda i: jax.tree.map(lambda b: b[i], epoch)) if host_batches
                else (lambda i: epoch.batch(first + i)))
    return train_steps(state, batch_at, count, max_count=steps_per_call,
                       task=task, loss_fn=loss_fn, skip_nonfinite=skip_nonfinite,
                       augment=augment, model_transform=transform)

  def eval_batch(state, batches, i):
    return eval_step(state, jax.tree.map(lambda b: b[i], batches), task=task,
                     model_transform=transform)

  state_out = replicated if state_sharding is None else state_sharding
  return (jax.jit(train_chunk, out_shardings=(state_out, replicated, replicated),
                  donate_argnums=0,
                  static_argnums=(3,) if static_count else (),
                  compiler_options=options("train")),
          jax.jit(eval_batch, out_shardings=replicated, compiler_options=options("eval")))


def use_compilation_cache(directory: str) -> None:
  """Turns on JAX's persistent compilation cache in `directory` (empty: leaves JAX as it is).

  A rerun of the same config then loads its programs instead of compiling them.
  A cache directory set through JAX's own config (JAX_COMPILATION_CACHE_DIR) wins.
  """
  if not directory or jax.config.jax_compilation_cache_dir:
    return
  directory = os.path.expanduser(directory)
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    logging.warning("Compilation cache off: cannot create %s (%s).", directory, e)
    return
  jax.config.update("jax_compilation_cache_dir", directory)
  # Small programs too: the training loop's are a few hundred ms to a few seconds each.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  logging.info("Compilation cache: %s (config.compilation_cache_dir).", directory)
