"""An ensemble of LeNet-5 seeds on MNIST, measured: each member and the average of their
probabilities on the 10,000 test images.

  python -m experiments.ensemble_seeds --data-dir=../shared/data [--seeds=0,1,2]

Each member is configs/mnist_lenet.py with its own seed (its own initialisation,
validation split and batch order); the ensemble is `jaxlearn.ensemble`.
Writes experiments/results/ensemble_seeds_<date>.json.
"""

import argparse
import os
import tempfile

from configs import mnist_lenet
from experiments import results_file
from jaxlearn.deploy import ensemble
from jaxlearn.training import train

def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--workdir", default="")
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix="ensemble_")
  workdirs = []
  for seed in (int(s) for s in args.seeds.split(",")):
    config = mnist_lenet.get_config()
    config.data.dir = args.data_dir
    config.seed = seed
    config.progress_bar = False
    workdirs.append(os.path.join(root, f"seed_{seed}"))
    train.train_and_evaluate(config, workdirs[-1])
  result = ensemble.evaluate_ensemble(workdirs, "test")
  for member, seed in zip(result["members"], args.seeds.split(",")):
    print(f"member seed {seed}: {member['accuracy']:.2%}")
  print(f"ensemble of {len(workdirs)}: {result['ensemble']['accuracy']:.2%}")
  results_file.write("ensemble_seeds", result)


if __name__ == "__main__":
  main()
