"""Quantization-aware training against post-training quantization, measured on MNIST.

  python -m experiments.qat --data-dir=../shared/data [--configs=mnist_lenet,mnist_mlp]

For each config: one run trained in float and one with `config.quantization=int8_qat`
(same seed, same epochs), each then quantized by `jaxlearn.quantize` in both modes
(`int8`: calibrated per-tensor input scales; `int8_weights`: per-example scales, the
scheme QAT trains with). Test accuracy on MNIST's 10,000 test images, and the training
time of each run. Writes experiments/results/qat_<date>.json.
"""

import argparse
import importlib
import json
import os
import tempfile

from experiments import results_file
from jaxlearn.deploy import quantize
from jaxlearn.training import train

def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--configs", default="mnist_lenet,mnist_mlp")
  parser.add_argument("--workdir", default="")
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix="qat_")
  rows = []
  for name in args.configs.split(","):
    for quantization in ("none", "int8_qat"):
      config = importlib.import_module(f"configs.{name}").get_config()
      config.data.dir = args.data_dir
      config.progress_bar = False
      config.quantization = quantization
      workdir = os.path.join(root, f"{name}_{quantization}")
      summary = train.train_and_evaluate(config, workdir)
      row = {"config": name, "trained_with": quantization, "epochs": config.num_epochs,
             "trained_test_accuracy": summary["test_accuracy"],
             "training_seconds": summary["train_seconds"]}
      for mode in quantize.MODES:
        report = quantize.quantize_and_export(workdir, os.path.join(workdir, mode), mode)
        row[f"{mode}_test_accuracy"] = report["int8_test"]["accuracy"]
      rows.append(row)
      print(json.dumps(row), flush=True)
  print("| config | trained | test accuracy as trained | after int8 | after int8_weights | "
        "training time |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['config']} | {'float32' if r['trained_with'] == 'none' else 'int8_qat'} | "
          f"{r['trained_test_accuracy']:.2%} | {r['int8_test_accuracy']:.2%} | "
          f"{r['int8_weights_test_accuracy']:.2%} | {r['training_seconds']:.0f} s |")
  results_file.write("qat", {"rows": rows})


if __name__ == "__main__":
  main()
