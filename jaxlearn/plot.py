"""Command line: `python -m jaxlearn.plot --workdir=DIR` writes DIR/curves.png.

One panel per metric the run logged per epoch (loss, accuracy, ...), train and
validation together, with the best epoch marked (see `jaxlearn.curves`). Needs
matplotlib (`pip install 'jaxlearn[plot]'`).
"""

import json
import os
import sys

from absl import app
from absl import flags

from jaxlearn.curves import plot_history


def main(argv):
  del argv
  workdir, out = flags.FLAGS.workdir, flags.FLAGS.out
  summary_path = os.path.join(workdir, "summary.json")
  if not os.path.exists(summary_path):
    sys.exit(f"jaxlearn: error: {summary_path} not found; --workdir must be the workdir of a "
             "finished run.")
  with open(summary_path, encoding="utf-8") as f:
    summary = json.load(f)
  out = out or os.path.join(workdir, "curves.png")
  plot_history(summary, out)
  print(f"wrote {out}")


if __name__ == "__main__":
  # Defined here, not at import, so importing this module next to jaxlearn.main is harmless.
  flags.DEFINE_string("workdir", None, "A run's workdir (holding summary.json).")
  flags.DEFINE_string("out", "", "The PNG to write; empty: WORKDIR/curves.png.")
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
