"""Command line: `python -m jaxlearn.main --config=configs/mnist_lenet.py --workdir=DIR`.

Any config field can be overridden, e.g. `--config.optimizer.learning_rate=0.05`;
configs are locked, so a misspelled field is an error rather than ignored.
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxlearn import train
from jaxlearn.errors import JaxlearnError

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and summary;"
                               " rerunning on the same one resumes training.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                          lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _only_jaxlearn_info(record) -> bool:
  """Keeps the log readable: INFO lines from jaxlearn, warnings and errors from anyone."""
  return record.levelno >= logging.WARNING or "jaxlearn" in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_only_jaxlearn_info)
  try:
    summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except JaxlearnError as e:
    logging.error("%s", e)
    print(f"\njaxlearn: error: {e}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)
  except train.TrainingInterrupted as e:
    print(f"\njaxlearn: {e}", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)
  headline = {k: v for k, v in summary.items() if k not in ("history", "config")}
  print(json.dumps(headline, indent=2))


if __name__ == "__main__":
  app.run(main)
