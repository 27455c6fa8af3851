"""Inference throughput of a float32 export against its int8 quantization, side by side.

  python -m experiments.bench_quantized --workdir=W [--batch-sizes=1,128] [--seconds=3]

W is a finished run (e.g. configs/mnist_lenet.py). Both artifacts are written
by jaxlearn (`export_run` and `quantize_and_export`, mode int8) and called as a
deployment would: `jax.export.deserialize(...).call`, compiled once per batch
size; each is timed for --seconds per batch size on the same inputs (test
examples). Prints images/s and the artifacts' sizes; writes
experiments/results/bench_quantized_<date>.json.
"""

import argparse
import os
import tempfile
import time

import jax
import numpy as np

from experiments import results_file
from jaxlearn.deploy import artifact, export, quantize
from jaxlearn.evaluation import evaluate
from jaxlearn.runs import finished

def throughput(call, inputs: np.ndarray, seconds: float) -> float:
  call(inputs).block_until_ready()
  done, started = 0, time.perf_counter()
  while time.perf_counter() - started < seconds:
    call(inputs).block_until_ready()
    done += len(inputs)
  return done / (time.perf_counter() - started)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--batch-sizes", default="1,128")
  parser.add_argument("--seconds", type=float, default=3.0)
  args = parser.parse_args()
  out = tempfile.mkdtemp(prefix="bench_quantized_")
  export.export_run(args.workdir, os.path.join(out, "fp32"))
  report = quantize.quantize_and_export(args.workdir, os.path.join(out, "int8"), "int8")
  run = finished.load_run(args.workdir)
  _, stored, _ = evaluate.split_inputs(run, "test")
  programs = {name: jax.jit(jax.export.deserialize(bytearray(open(
      os.path.join(out, name, artifact.MODEL_FILE), "rb").read())).call) for name in ("fp32", "int8")}
  sizes = {name: os.path.getsize(os.path.join(out, name, artifact.MODEL_FILE))
           for name in programs}
  rows = []
  for batch in (int(b) for b in args.batch_sizes.split(",")):
    inputs = stored[:batch]
    row = {"batch": batch, **{f"{name}_images_per_s": throughput(call, inputs, args.seconds)
                              for name, call in programs.items()}}
    rows.append(row)
    print(f"batch {batch:4d}: fp32 {row['fp32_images_per_s']:10.0f} img/s, int8 "
          f"{row['int8_images_per_s']:10.0f} img/s "
          f"({row['int8_images_per_s'] / row['fp32_images_per_s']:.2f}x)", flush=True)
  metric = next(iter(report["trained_test"]))
  print(f"test {metric}: fp32 {report['trained_test'][metric]:.4f}, int8 "
        f"{report['int8_test'][metric]:.4f}; model.jax fp32 {sizes['fp32'] / 1e3:.0f} kB, int8 "
        f"{sizes['int8'] / 1e3:.0f} kB ({sizes['int8'] / sizes['fp32']:.0%})")
  results_file.write("bench_quantized", {
      "workdir": args.workdir, "model": run.config.model.name, "rows": rows,
      "artifact_bytes": sizes, "trained_test": report["trained_test"],
      "int8_test": report["int8_test"]})


if __name__ == "__main__":
  main()
