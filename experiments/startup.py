"""Where a run's start-up goes: each phase of `train_and_evaluate` timed in a fresh process.

  JAXLEARN_DATA_DIR=../shared/data python experiments/startup.py --json /tmp/startup.json

Runs the phases of configs/mnist_lenet.py's run one after the other, twice, each
time in a new process: first with an empty compilation cache directory ("cold",
as a first run on a machine), then with the cache the first process wrote
("warm", as every later run of the same config). Phases: Python imports (jax,
flax, optax, orbax, jaxlearn), reading and decoding the data, building the task,
building the initial state (one compiled program), the abstract model check,
then two training epochs with their validation (the first compiles).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def phases(cache_dir: str) -> dict:
  """The phase timings of one start-up, in this process."""
  times, started = {}, time.perf_counter()

  def lap(name):
    nonlocal started
    now = time.perf_counter()
    times[name] = now - started
    started = now

  import jax  # pylint: disable=import-outside-toplevel
  from jaxlearn.runs import build  # pylint: disable=import-outside-toplevel
  from jaxlearn.training import compiled  # pylint: disable=import-outside-toplevel
  from jaxlearn import data  # pylint: disable=import-outside-toplevel
  from jaxlearn.core import parallel  # pylint: disable=import-outside-toplevel
  from jaxlearn.training import epoch as epoch_lib  # pylint: disable=import-outside-toplevel
  from jaxlearn.training import train  # pylint: disable=import-outside-toplevel,unused-import
  from jaxlearn.data import pipeline  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, ROOT)
  from configs import mnist_lenet  # pylint: disable=import-outside-toplevel
  lap("imports")
  config = mnist_lenet.get_config()
  config.progress_bar = False
  compiled.use_compilation_cache(cache_dir)
  mesh = parallel.make_mesh()
  splits = data.make_splits(data.load_raw(config.data, config.seed), config.data, config.seed)
  lap("data: read, decode, split, normalise")
  task, splits = build.prepare_task(config, splits)
  steps = pipeline.num_train_steps(len(splits.train["targets"]), config.batch_size)
  lap("task")
  state = build.create_state(config, steps, build.data_dims(splits, task))
  lap("initial state (compiled)")
  build.check_model_fits(state, splits, task, config.model.name)
  lap("abstract model check")
  state = jax.device_put(state, parallel.replicated(mesh))
  train_data = pipeline.to_device(splits.train, mesh)
  val = pipeline.make_eval_batches(splits.val, config.eval_batch_size, mesh)
  batches = pipeline.make_epoch_batcher(config.batch_size, mesh)(train_data, config.seed, 0)
  lap("data to device, first shuffle")
  train_chunk, eval_batch = compiled.compile_steps(mesh, task, steps_per_call=config.steps_per_call,
                                                   cpu_kernels=config.cpu_kernels)
  runner = epoch_lib.EpochRunner.from_config(config, train_chunk, steps)
  for epoch in (0, 1):  # The first compiles the chunk and the metric merges; the second not.
    state, _ = runner.train(state, batches, epoch)
    jax.block_until_ready(state)
    lap(f"epoch {epoch + 1} ({'with' if not epoch else 'no'} compilation)")
    epoch_lib.evaluate(eval_batch, state, val)
    lap(f"validation {epoch + 1} ({'with' if not epoch else 'no'} compilation)")
  return times


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--phases-in-this-process", metavar="CACHE_DIR",
                      help=argparse.SUPPRESS)  # The child's side.
  parser.add_argument("--json", help="write the results here")
  args = parser.parse_args()
  if args.phases_in_this_process is not None:
    print(json.dumps(phases(args.phases_in_this_process)))
    return
  results = {}
  with tempfile.TemporaryDirectory() as cache_dir:
    for name in ("cold", "warm"):
      started = time.perf_counter()
      out = subprocess.run([sys.executable, __file__, f"--phases-in-this-process={cache_dir}"],
                           check=True, capture_output=True, text=True, cwd=ROOT)
      results[name] = {"process_seconds": time.perf_counter() - started,
                       "phases": json.loads(out.stdout.strip().splitlines()[-1])}
  print(f"{'phase':40s} {'cold s':>8s} {'warm s':>8s}")
  for phase in results["cold"]["phases"]:
    print(f"{phase:40s} {results['cold']['phases'][phase]:8.2f} "
          f"{results['warm']['phases'][phase]:8.2f}")
  print(f"{'whole process':40s} {results['cold']['process_seconds']:8.2f} "
        f"{results['warm']['process_seconds']:8.2f}")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
