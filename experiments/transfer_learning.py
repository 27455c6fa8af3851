"""Transfer learning, measured: LeNet-5 features learnt on MNIST, reused for Fashion-MNIST
with only 1,000 labelled training images.

  python -m experiments.transfer_learning --data-dir=../shared/data [--seeds=0,1,2]

(a) from scratch on the 1,000 images; (b) the MNIST run's convolutions copied and frozen,
a fresh fully connected head trained (`config.freeze='conv.*'`,
`config.init.from_checkpoint_include='conv.*'`); (c) (b) then everything unfrozen and
trained on at a 10x smaller learning rate. Every arm trains with the same recipe
(mnist_lenet's SGD + one-cycle, batch 50) and keeps its best epoch on 3,000 held-out
validation images (5% of the training file); the test accuracy is on Fashion-MNIST's
10,000 test images. Writes experiments/results/transfer_learning_<date>.json.
"""

import argparse
import json
import os
import statistics
import tempfile

from configs import mnist_lenet
from experiments import results_file
from jaxlearn.training import train

def base_config(data_dir: str, seed: int):
  config = mnist_lenet.get_config()
  config.data.dir = data_dir
  config.seed = seed
  config.progress_bar = False
  return config


def fashion_config(data_dir: str, seed: int, train_examples: int, epochs: int):
  config = base_config(data_dir, seed)
  config.data.name = "fashion_mnist"
  config.data.val_fraction = 0.05
  config.data.max_train_examples = train_examples
  config.batch_size = 50
  config.num_epochs = epochs
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--train-examples", type=int, default=1000)
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--unfrozen-epochs", type=int, default=15)
  parser.add_argument("--workdir", default="")
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix="transfer_")
  pretrained = os.path.join(root, "mnist")
  source = train.train_and_evaluate(base_config(args.data_dir, 0), pretrained)
  print(f"MNIST LeNet-5 (the features): {source['test_accuracy']:.2%} test accuracy")
  rows = []
  for seed in (int(s) for s in args.seeds.split(",")):
    scratch = train.train_and_evaluate(
        fashion_config(args.data_dir, seed, args.train_examples, args.epochs),
        os.path.join(root, f"scratch_{seed}"))
    frozen_config = fashion_config(args.data_dir, seed, args.train_examples, args.epochs)
    frozen_config.init.from_checkpoint = pretrained
    frozen_config.init.from_checkpoint_include = "conv.*"
    frozen_config.freeze = "conv.*"
    frozen = train.train_and_evaluate(frozen_config, os.path.join(root, f"frozen_{seed}"))
    unfrozen_config = fashion_config(args.data_dir, seed, args.train_examples,
                                     args.unfrozen_epochs)
    unfrozen_config.init.from_checkpoint = os.path.join(root, f"frozen_{seed}")
    unfrozen_config.optimizer.learning_rate /= 10
    unfrozen = train.train_and_evaluate(unfrozen_config, os.path.join(root, f"unfrozen_{seed}"))
    row = {"seed": seed, "scratch": scratch["test_accuracy"],
           "frozen_features_new_head": frozen["test_accuracy"],
           "then_unfrozen_lr_div_10": unfrozen["test_accuracy"]}
    rows.append(row)
    print(json.dumps(row), flush=True)
  arms = ("scratch", "frozen_features_new_head", "then_unfrozen_lr_div_10")
  summary = {arm: {"mean": statistics.mean(r[arm] for r in rows),
                   "stdev": statistics.stdev(r[arm] for r in rows) if len(rows) > 1 else 0.0}
             for arm in arms}
  print("| arm | " + " | ".join(f"seed {r['seed']}" for r in rows) + " | mean ± sd |")
  print("|---|" + "---|" * (len(rows) + 1))
  for arm in arms:
    print(f"| {arm} | " + " | ".join(f"{r[arm]:.2%}" for r in rows) +
          f" | {summary[arm]['mean']:.2%} ± {summary[arm]['stdev']:.2%} |")
  results_file.write("transfer_learning", {
      "train_examples": args.train_examples, "epochs": args.epochs,
      "unfrozen_epochs": args.unfrozen_epochs,
      "mnist_source_test_accuracy": source["test_accuracy"], "rows": rows, "summary": summary})


if __name__ == "__main__":
  main()
