"""Whole-process wall time: `jaxlearn.main` against a PyTorch eager LeNet-5 loop on MNIST.

  JAXLEARN_DATA_DIR=../shared/data python experiments/e2e_vs_pytorch.py --reps 3 \
      --json experiments/results/e2e_lenet_$(date +%F).json
  # The same number of epochs on both sides instead of "to 99%":
  JAXLEARN_DATA_DIR=../shared/data python experiments/e2e_vs_pytorch.py --epochs 2

jaxlearn runs twice per repetition: "cold" with an empty compilation cache (a
first run on a machine) and "warm" with the cache the cold run wrote (every
later run of the config; config.compilation_cache_dir is on by default).

Repetition r runs, one after the other as fresh processes with seed r (start-up,
imports, data loading and compilation all counted; how many epochs PyTorch needs
depends on its seed, so the seeds vary):
- jaxlearn: `python -m jaxlearn.main --config=configs/mnist_lenet.py --workdir=<new dir>`
  as the README gives it (plus `--config.seed=r`, and no progress bar); its test
  accuracy is read from summary.json;
- PyTorch: experiments/pytorch_lenet_mnist.py, which stops at the first epoch
  whose test accuracy reaches the target (with --epochs N: after N epochs).
Without --epochs the run fails if either side ends below the target. Reports the median wall
seconds of each and their ratio (the issue's target: jaxlearn <= 0.5x), and each
side's steady-state training time: its epochs times its median epoch after the
first (which holds the compilation and warm-up), validation and testing left out
where the side times them apart (PyTorch does; jaxlearn's epochs include validation).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_jaxlearn(workdir: str, data_dir: str, seed: int, cache_dir: str, epochs: int) -> dict:
  command = [sys.executable, "-m", "jaxlearn.main", "--config=configs/mnist_lenet.py",
             f"--workdir={workdir}", "--config.progress_bar=False", f"--config.seed={seed}",
             f"--config.compilation_cache_dir={cache_dir}"]
  if epochs:
    command.append(f"--config.num_epochs={epochs}")
  started = time.perf_counter()
  subprocess.run(command, cwd=ROOT, env=dict(os.environ, JAXLEARN_DATA_DIR=data_dir),
                 check=True, capture_output=True)
  seconds = time.perf_counter() - started
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  epochs = [h["seconds"] for h in summary["history"]]
  return {"seconds": seconds, "test_accuracy": summary["test_accuracy"],
          "epochs": summary["epochs_run"], "train_seconds": summary["train_seconds"],
          "steady_train_seconds": steady_seconds(epochs)}


def run_pytorch(data_dir: str, target: float, seed: int, epochs: int) -> dict:
  command = [sys.executable, os.path.join(HERE, "pytorch_lenet_mnist.py"),
             f"--data-dir={data_dir}", f"--target={target if not epochs else 2.0}",
             f"--seed={seed}", f"--max-epochs={epochs or 20}"]
  started = time.perf_counter()
  out = subprocess.run(command, check=True, capture_output=True, text=True)
  seconds = time.perf_counter() - started
  result = json.loads(out.stdout.strip().splitlines()[-1])
  last = result["history"][-1]
  return {"seconds": seconds, "test_accuracy": last["test_accuracy"], "epochs": last["epoch"],
          "device": result["device"],
          "steady_train_seconds": steady_seconds([h["train_seconds"] for h in result["history"]])}


def steady_seconds(epoch_seconds: list) -> float:
  """The epochs' time without the first epoch's warm-up: the median later epoch for it."""
  if len(epoch_seconds) < 2:
    return float(epoch_seconds[0])
  return float(statistics.median(epoch_seconds[1:]) * len(epoch_seconds))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--reps", type=int, default=3)
  parser.add_argument("--target", type=float, default=0.99)
  parser.add_argument("--epochs", type=int, default=0,
                      help="train both sides this many epochs (0: jaxlearn's config, PyTorch "
                      "to --target)")
  parser.add_argument("--json", help="write the results here")
  args = parser.parse_args()
  data_dir = os.path.abspath(os.environ.get("JAXLEARN_DATA_DIR", os.path.join(ROOT, "..",
                                                                              "shared", "data")))
  runs = {"jaxlearn": [], "jaxlearn_warm": [], "pytorch": []}
  for rep in range(args.reps):
    with tempfile.TemporaryDirectory() as workdir:
      cache = os.path.join(workdir, "cache")
      for side in ("jaxlearn", "jaxlearn_warm"):  # The second finds the first's cache.
        runs[side].append(run_jaxlearn(os.path.join(workdir, side), data_dir, rep, cache,
                                       args.epochs))
    runs["pytorch"].append(run_pytorch(data_dir, args.target, rep, args.epochs))
    print(f"rep {rep + 1}: " + "   ".join(
        f"{side} {r[-1]['seconds']:.1f}s (test {r[-1]['test_accuracy']:.4f} after "
        f"{r[-1]['epochs']} epochs)" for side, r in runs.items()), flush=True)
  for side, results in runs.items():
    below = [r["test_accuracy"] for r in results if r["test_accuracy"] < args.target]
    if below and not args.epochs:
      raise SystemExit(f"{side} ended below the {args.target} target: {below}")
  medians = {side: statistics.median(r["seconds"] for r in results)
             for side, results in runs.items()}
  steady = {side: statistics.median(r["steady_train_seconds"] for r in results)
            for side, results in runs.items()}
  summary = {
      "jaxlearn_s": medians["jaxlearn"], "jaxlearn_warm_s": medians["jaxlearn_warm"],
      "pytorch_s": medians["pytorch"], "ratio": medians["jaxlearn"] / medians["pytorch"],
      "ratio_warm": medians["jaxlearn_warm"] / medians["pytorch"],
      "target": args.target if not args.epochs else None, "epochs": args.epochs or None,
      "runs": runs, "jaxlearn_steady_train_s": steady["jaxlearn"],
      "pytorch_steady_train_s": steady["pytorch"],
      "machine": {"date": datetime.date.today().isoformat(),
                  "cpu": platform.processor() or platform.machine(),
                  "cpu_cores": os.cpu_count(), "jax_backend": _jax_backend(),
                  "pytorch_device": runs["pytorch"][0]["device"]},
  }
  goal = f"{args.epochs} epochs" if args.epochs else f"{args.target:.1%}"
  print(f"median wall to {goal}: jaxlearn {medians['jaxlearn']:.1f}s (cold cache), "
        f"{medians['jaxlearn_warm']:.1f}s (warm), pytorch {medians['pytorch']:.1f}s, ratio "
        f"{summary['ratio']:.2f} / {summary['ratio_warm']:.2f}; steady-state "
        f"training: jaxlearn {steady['jaxlearn']:.2f}s, pytorch {steady['pytorch']:.2f}s")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)


def _jax_backend() -> str:
  """JAX's device in a fresh process (this script imports no JAX itself)."""
  out = subprocess.run([sys.executable, "-c", "import jax; d = jax.devices()[0]; "
                        "print(d.platform + ':' + getattr(d, 'device_kind', ''))"],
                       check=True, capture_output=True, text=True)
  return out.stdout.strip()


if __name__ == "__main__":
  main()
