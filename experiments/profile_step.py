"""Where a training step's time goes: XLA's per-op trace of jaxlearn's real training loop.

  python experiments/profile_step.py --model lenet5 --steps 64
  python experiments/profile_step.py --model resnet20 --steps 8 --top 40

Trains `--steps` steps of one of bench_vs_pytorch.py's models (same config, data
and loop) once to compile, then again under `jax.profiler.trace`, and prints the
XLA operations that took the most time per step, each with its output shape and
the JAX operation it came from (from XLA's dump of the optimised program). The
trace stays in `--trace-dir` for TensorBoard's profile plugin or Perfetto.

Read the table with care. XLA:CPU runs independent operations side by side on
the cores, and an operation's traced time then includes the time it shared its
core; and it records no event for some operations it hands to its thread pool
(most of ResNet-20's convolutions). The column is a guide to where to look, not a
budget: whether a piece is worth changing is best settled by removing it and
timing the step (see experiments/README.md). The per-op table needs XLA:CPU's
trace events; on other backends open the trace instead.
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time


def _set_xla_flags(dump_dir: str) -> None:
  """Per-op trace events and the optimised HLO; must run before JAX starts."""
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                      "--xla_cpu_enable_xprof_traceme=true",
                                      f"--xla_dump_to={dump_dir}", "--xla_dump_hlo_as_text",
                                      "--xla_dump_hlo_module_re=train_chunk"])


# An HLO instruction line: "%name = f32[..]{..} opcode(...), ..., metadata={op_name="..." ...}".
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\(.*?\)|\S+) ([\w\-]+)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def describe_ops(dump_dir: str) -> dict:
  """op name -> (output shape, opcode, the JAX operation it came from), from the optimised HLO."""
  described = {}
  for path in glob.glob(os.path.join(dump_dir, "*train_chunk*after_optimizations.txt")):
    with open(path, encoding="utf-8") as f:
      for line in f:
        instruction = _INSTRUCTION.match(line)
        if instruction:
          name, shape, opcode = instruction.groups()
          op_name = _OP_NAME.search(line)
          shape = "(tuple)" if shape.startswith("(") else shape.split("{")[0]
          described[name] = (shape, opcode,
                             _jax_op(op_name.group(1)) if op_name else "")
  return described


def _jax_op(op_name: str) -> str:
  """"jit(f)/while/body/closed_call/transpose(jvp())/div" -> "transpose(jvp())/div"."""
  return "/".join(op_name.split("/")[-2:])


def op_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
  """Total traced nanoseconds and call counts of each XLA op on the CPU's execution threads."""
  from jax.profiler import ProfileData  # pylint: disable=import-outside-toplevel
  paths = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
  if not paths:
    raise SystemExit(f"no trace was written under {trace_dir}")
  nanoseconds, calls = collections.Counter(), collections.Counter()
  for plane in ProfileData.from_file(paths[0]).planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLA"):
        continue
      for event in line.events:
        if "Execute" in event.name or "Await" in event.name:
          continue
        nanoseconds[event.name] += event.duration_ns
        calls[event.name] += 1
  return nanoseconds, calls


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="lenet5", help="lenet5, mlp, resnet20 or gru")
  parser.add_argument("--steps", type=int, default=64, help="steps traced (and compiled first)")
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--top", type=int, default=25, help="operations listed")
  parser.add_argument("--trace-dir", default="", help="where the trace goes (default: a temp dir)")
  args = parser.parse_args()

  dump_dir = tempfile.mkdtemp(prefix="jaxlearn_hlo_")
  trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="jaxlearn_trace_")
  _set_xla_flags(dump_dir)
  import jax  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import bench_vs_pytorch as bench  # pylint: disable=import-outside-toplevel

  if args.model not in bench.BENCHMARKED:
    parser.error(f"--model {args.model!r}: choose from {list(bench.BENCHMARKED)}")
  _, make_data, _ = bench.BENCHMARKED[args.model]
  images, labels, source = make_data(args.steps * args.batch_size)
  side = bench.JaxlearnSide(args.model, images, labels, args.batch_size)
  side.run_epoch()  # Compiles.
  with jax.profiler.trace(trace_dir):
    started = time.perf_counter()
    side.run_epoch()
    wall = time.perf_counter() - started
  steps = side.steps

  nanoseconds, calls = op_times(trace_dir)
  described = describe_ops(dump_dir)
  print(f"{args.model}, batch {args.batch_size}, {steps} steps of {source} on "
        f"{jax.default_backend()} ({os.cpu_count()} cores), jax {jax.__version__}")
  op_ms = sum(nanoseconds.values()) / steps / 1e6
  print(f"wall time {wall / steps * 1e3:.2f} ms per step (traced; tracing slows it a little); "
        f"sum of op times {op_ms:.2f} ms per step")
  if op_ms < 0.8 * wall / steps * 1e3:
    print("  (much of the step has no op event: XLA:CPU does not record every operation it "
          "hands to its thread pool, e.g. most of ResNet-20's convolutions)")
  if not nanoseconds:
    print(f"no per-op events (they come from XLA:CPU); open the trace in {trace_dir}")
    return
  print(f"\n{'ms/step':>8} {'calls':>6}  {'op':<32} {'opcode':<14} {'shape':<26} from")
  for name, total in nanoseconds.most_common(args.top):
    shape, opcode, jax_op = described.get(name, ("?", "?", ""))
    print(f"{total / steps / 1e6:8.3f} {calls[name] / steps:6.1f}  {name:<32} {opcode:<14} "
          f"{shape:<26} {jax_op}")
  print(f"\ntrace: {trace_dir}   optimised HLO: {dump_dir}")


if __name__ == "__main__":
  main()
