"""Diagnosis of a run: `python -m jaxlearn.diagnose --workdir=W`.

Reads the run's records (summary.json, metrics.jsonl, layer_stats.jsonl and,
after `evaluate`, the test report) and says in plain sentences which problems
it shows — overfitting, underfitting, a learning rate too high or too low,
training stopped too early or run past its best, class imbalance, a
suspiciously perfect score, vanishing or exploding gradients, dead ReLUs, a
layer whose updates are far off the rest — with the epochs and values that
show each, and what to try (see `jaxlearn.runs.diagnosis`). Writes
W/diagnosis.json. Exit 0 whether or not it finds something.
"""

import os

from absl import flags

from jaxlearn import cli


def main(argv):
  if len(argv) > 1:
    raise _error(f"Unexpected arguments {argv[1:]}; this command takes only --workdir.")
  # pylint: disable=import-outside-toplevel
  import ml_collections
  from jaxlearn import data
  from jaxlearn.runs import diagnosis
  from jaxlearn.runs.workdir import RunDir
  workdir = os.path.abspath(flags.FLAGS.workdir)
  if not os.path.exists(RunDir(workdir).config):
    raise _error(f"{workdir} holds no run (no config.json); --workdir must be a training "
                 "run's workdir.")
  records = diagnosis.read_records(workdir)
  config = ml_collections.ConfigDict(records.config)
  perfect = (records.summary or {}).get("test_accuracy", 0) >= 1.0
  needs_counts = records.report is None and config.task in ("classification", "binary")
  if perfect or needs_counts:  # What the records lack, from the run's own data.
    splits = data.make_splits(data.load_raw(config.data, config.seed), config.data, config.seed)
    records.class_counts = diagnosis.class_counts(splits.train["targets"], config.task)
    if perfect:
      records.duplicates = diagnosis.overlap(splits.train["inputs"], splits.test["inputs"])
  findings = diagnosis.diagnose(records)
  diagnosis.write(workdir, findings)
  if not findings:
    print(f"No problem found in {workdir}: "
          + ("no overfitting, underfitting, divergence or stall in its "
             f"{len(records.history)} epochs" if records.history else "no epoch finished yet")
          + ("; gradients, updates and ReLUs healthy in every layer" if records.layers else
             " (no layer_stats.jsonl: config.logging.layer_stats was off)") + ".")
  for finding in findings:
    print(f"- {finding.sentence()}")
  print(f"Wrote {RunDir(workdir).diagnosis}")


def _error(message: str):
  from jaxlearn.errors import InputError  # pylint: disable=import-outside-toplevel
  return InputError(message)


if __name__ == "__main__":
  cli.define_workdir_flag()
  cli.run(main)
