"""Evaluate a finished run: `python -m jaxlearn.evaluate --workdir=W [--split=test|val]`.

Writes W/evaluation/<split>/ (report.json, figures, mistakes) and prints the
per-class table; see `jaxlearn.evaluation.evaluate`.
"""

from absl import flags

from jaxlearn import cli


def main(argv):
  del argv
  from jaxlearn.evaluation import evaluate  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  report = evaluate.evaluate_run(values.workdir, values.split, values.batch_size,
                                 data_dir=values.data_dir)
  print(evaluate.format_report(report))
  print("\nWrote " + ", ".join(report["files"]))


if __name__ == "__main__":
  cli.define_workdir_flag()
  cli.define_split_flag()
  cli.define_data_dir_flag()
  flags.DEFINE_integer("batch_size", 0, "Examples per compiled call (0: the run's "
                       "eval_batch_size).", lower_bound=0)
  cli.run(main)
