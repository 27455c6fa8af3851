"""Runs studies and records their results in experiments/studies/results/NAME/.

  python experiments/studies/record.py [NAME ...] [--workdir /tmp/studies]

Each study runs as `python -m jaxlearn.sweep --study=NAME --workdir=WORKDIR/NAME`
(a rerun skips finished trials); its results.md, results.csv, summary.png and
curves.png are copied here with run.json: the wall time, the CPU, the versions
and the date, which experiments/studies/README.md quotes. `--keep-time` rewrites
the tables of finished studies (e.g. after a change to the table's columns) and
keeps the time, machine and date of the run that trained them.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STUDIES = ("optimizers", "learning_rate", "schedules", "initialisation", "regularisation",
           "augmentation", "batch_size", "recurrent_cells", "imbalanced_losses")
FILES = ("results.md", "results.csv", "summary.png", "curves.png")


def cpu_model() -> str:
  try:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    return platform.processor()
  return next((line.split(":", 1)[1].strip() for line in text.splitlines()
               if line.startswith("Model name")), platform.processor())


def record(name: str, workdir: str, keep_time: bool = False) -> dict:
  started = time.time()
  done = subprocess.run([sys.executable, "-m", "jaxlearn.sweep", f"--study={name}",
                         f"--workdir={os.path.join(workdir, name)}"], check=False)
  seconds = time.time() - started
  out = os.path.join(HERE, "results", name)
  os.makedirs(out, exist_ok=True)
  for file in FILES:
    source = os.path.join(workdir, name, file)
    if os.path.exists(source):
      shutil.copy(source, out)
  import jax  # pylint: disable=import-outside-toplevel
  run = {"study": name, "exit_code": done.returncode, "wall_seconds": round(seconds, 1),
         "cpu": cpu_model(), "cores": os.cpu_count(), "jax": jax.__version__,
         "python": platform.python_version(),
         "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")}
  path = os.path.join(out, "run.json")
  if keep_time and os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      trained = json.load(f)
    run = {**run, **{k: trained[k] for k in ("wall_seconds", "cpu", "cores", "jax", "python",
                                             "date")}, "tables_rewritten": run["date"]}
  with open(path, "w", encoding="utf-8") as f:
    json.dump(run, f, indent=2)
  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", default=list(STUDIES))
  parser.add_argument("--workdir", default="/tmp/studies")
  parser.add_argument("--keep-time", action="store_true",
                      help="keep the time, machine and date of the run that trained them")
  args = parser.parse_args()
  for name in args.names:
    print(json.dumps(record(name, args.workdir, args.keep_time)), flush=True)


if __name__ == "__main__":
  main()
