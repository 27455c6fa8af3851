"""Knowledge distillation, measured: a LeNet-5 teacher on MNIST, a 784-32-10 MLP student
trained with and without the teacher, same recipe and epochs, several seeds.

  python -m experiments.distillation --data-dir=../shared/data [--seeds=0,1,2] [--epochs=10]

The teacher is configs/mnist_lenet.py as it stands (4 epochs). Each student is
configs/mnist_mlp.py with one hidden layer of 32 units, trained for --epochs; the
distilled one adds `config.distill.teacher` (temperature and alpha from the flags,
defaults as in jaxlearn/config.py). Test accuracy on MNIST's 10,000 test images.
Writes experiments/results/distillation_<date>.json.
"""

import argparse
import json
import os
import statistics
import tempfile

from configs import mnist_lenet, mnist_mlp
from experiments import results_file
from jaxlearn.training import train

def student_config(data_dir: str, seed: int, epochs: int):
  config = mnist_mlp.get_config()
  config.data.dir = data_dir
  config.seed = seed
  config.model.hidden = (32,)
  config.num_epochs = epochs
  config.progress_bar = False
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--temperature", type=float, default=4.0)
  parser.add_argument("--alpha", type=float, default=0.9)
  parser.add_argument("--workdir", default="")
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix="distill_")
  teacher_config = mnist_lenet.get_config()
  teacher_config.data.dir = args.data_dir
  teacher_config.progress_bar = False
  teacher_dir = os.path.join(root, "teacher")
  teacher = train.train_and_evaluate(teacher_config, teacher_dir)
  print(f"Teacher LeNet-5: {teacher['test_accuracy']:.2%} test accuracy", flush=True)
  rows = []
  for seed in (int(s) for s in args.seeds.split(",")):
    plain = train.train_and_evaluate(student_config(args.data_dir, seed, args.epochs),
                                     os.path.join(root, f"plain_{seed}"))
    config = student_config(args.data_dir, seed, args.epochs)
    config.distill.teacher = teacher_dir
    config.distill.temperature = args.temperature
    config.distill.alpha = args.alpha
    distilled = train.train_and_evaluate(config, os.path.join(root, f"distilled_{seed}"))
    rows.append({"seed": seed, "student_alone": plain["test_accuracy"],
                 "student_distilled": distilled["test_accuracy"]})
    print(json.dumps(rows[-1]), flush=True)
  differences = [r["student_distilled"] - r["student_alone"] for r in rows]
  summary = {arm: statistics.mean(r[arm] for r in rows)
             for arm in ("student_alone", "student_distilled")}
  summary["difference_mean"] = statistics.mean(differences)
  summary["difference_stdev"] = statistics.stdev(differences) if len(rows) > 1 else 0.0
  print("| student | " + " | ".join(f"seed {r['seed']}" for r in rows) + " | mean |")
  print("|---|" + "---|" * (len(rows) + 1))
  for arm in ("student_alone", "student_distilled"):
    print(f"| {arm} | " + " | ".join(f"{r[arm]:.2%}" for r in rows) + f" | {summary[arm]:.2%} |")
  print(f"difference (distilled - alone): {summary['difference_mean']:+.2%} "
        f"± {summary['difference_stdev']:.2%} (sd over seeds)")
  results_file.write("distillation", {
      "epochs": args.epochs, "temperature": args.temperature, "alpha": args.alpha,
      "teacher_test_accuracy": teacher["test_accuracy"], "rows": rows, "summary": summary})


if __name__ == "__main__":
  main()
