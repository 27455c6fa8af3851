"""Magnitude pruning, measured: LeNet-5 on MNIST at several sparsities, and the exported size.

  python -m experiments.pruning --data-dir=../shared/data [--sparsities=0,0.5,0.8,0.9,0.95]

Each run is configs/mnist_lenet.py (4 epochs) with `config.prune.sparsity` reached over
the first 2 epochs (`prune.epochs=2`, global ranking of the kernels), then exported with
`jaxlearn.export`; the artifact's size is given as written and gzip-compressed (zeros
compress; the program stores the weights densely). Test accuracy on MNIST's 10,000 test
images. Writes experiments/results/pruning_<date>.json.
"""

import argparse
import gzip
import json
import os
import tempfile

from configs import mnist_lenet
from experiments import results_file
from jaxlearn.core import prune
from jaxlearn.deploy import artifact, export
from jaxlearn.runs import checkpoint
from jaxlearn.training import train

def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--sparsities", default="0,0.5,0.8,0.9,0.95")
  parser.add_argument("--prune-epochs", type=int, default=2)
  parser.add_argument("--workdir", default="")
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix="pruning_")
  rows = []
  for sparsity in (float(s) for s in args.sparsities.split(",")):
    config = mnist_lenet.get_config()
    config.data.dir = args.data_dir
    config.progress_bar = False
    config.prune.sparsity = sparsity
    config.prune.epochs = args.prune_epochs
    workdir = os.path.join(root, f"sparsity_{sparsity:g}")
    summary = train.train_and_evaluate(config, workdir)
    stored = checkpoint.load_best_arrays(workdir)
    reached = prune.sparsity_of(stored["params"], [config.prune.params])["all"]
    export.export_run(workdir, os.path.join(workdir, "export"))
    model = open(os.path.join(workdir, "export", artifact.MODEL_FILE), "rb").read()
    rows.append({"sparsity_target": sparsity, "sparsity_reached": reached,
                 "test_accuracy": summary["test_accuracy"], "artifact_bytes": len(model),
                 "artifact_gzip_bytes": len(gzip.compress(model, 9))})
    print(json.dumps(rows[-1]), flush=True)
  print("| target sparsity | zeros in the kernels | test accuracy | model.jax | gzip -9 |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['sparsity_target']:.0%} | {r['sparsity_reached']:.2%} | "
          f"{r['test_accuracy']:.2%} | {r['artifact_bytes'] / 1e3:.0f} kB | "
          f"{r['artifact_gzip_bytes'] / 1e3:.0f} kB |")
  results_file.write("pruning", {"prune_epochs": args.prune_epochs, "rows": rows})


if __name__ == "__main__":
  main()
