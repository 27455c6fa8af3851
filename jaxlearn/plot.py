"""Training curves: `python -m jaxlearn.plot --workdir=DIR` writes DIR/curves.png.

One panel per metric the run logged per epoch (loss, accuracy, ...), train and
validation together, with the best epoch marked (see `jaxlearn.evaluation.curves`).
Needs matplotlib (`pip install 'jaxlearn[plot]'`).
"""

import json
import os

from absl import flags

from jaxlearn import cli
from jaxlearn.errors import InputError


def main(argv):
  del argv
  from jaxlearn.evaluation.curves import plot_history  # pylint: disable=import-outside-toplevel
  from jaxlearn.runs.workdir import RunDir  # pylint: disable=import-outside-toplevel
  run_dir = RunDir(flags.FLAGS.workdir)
  if not os.path.exists(run_dir.summary):
    raise InputError(f"{run_dir.summary} not found; --workdir must be the workdir of a "
                     "finished run.")
  with open(run_dir.summary, encoding="utf-8") as f:
    summary = json.load(f)
  out = flags.FLAGS.out or run_dir.curves
  plot_history(summary, out)
  print(f"wrote {out}")


if __name__ == "__main__":
  # Defined here, not at import, so importing this module next to jaxlearn.main is harmless.
  flags.DEFINE_string("workdir", None, "A run's workdir (holding summary.json).")
  flags.mark_flags_as_required(["workdir"])
  flags.DEFINE_string("out", "", "The PNG to write; empty: WORKDIR/curves.png.")
  cli.run(main)
