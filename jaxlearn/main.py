"""Command line: `python -m jaxlearn.main --config=configs/mnist_lenet.py --workdir=DIR`.

Any config field can be overridden, e.g. `--config.optimizer.learning_rate=0.05`;
configs are locked, so a misspelled field is an error rather than ignored.
"""

import importlib.util
import json
import logging as std_logging
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


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with a clear message for an override of a key the config lacks."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    message = _unknown_override_message(argv) or f"Bad --config override ({e})."
    print(f"jaxlearn: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def _unknown_override_message(argv: list[str]) -> str | None:
  """Names the first `--config.a.b=v` whose key is not in the config file's get_config()."""
  config_path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if config_path is None:
    return None
  spec = importlib.util.spec_from_file_location("_jaxlearn_config", config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    path = arg[len("--config."):].split("=", 1)[0]
    node, walked = config, ["config"]
    for key in path.split("."):
      if not hasattr(node, "keys") or key not in node:
        known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none"
        return (f"Unknown config key {'.'.join(walked + [key])!r} in {arg!r}. "
                f"{'.'.join(walked)} has: {known}. Fix the spelling, or add the key with its "
                "default to jaxlearn/config.py if it is a new option.")
      node, walked = node[key], walked + [key]
  return None


def _only_jaxlearn_info(record) -> bool:
  """Keeps the log readable: INFO lines from jaxlearn, warnings and errors from anyone."""
  return record.levelno >= std_logging.WARNING or "jaxlearn" in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().python_handler.addFilter(_only_jaxlearn_info)
  try:
    summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except JaxlearnError as e:
    print(f"\njaxlearn: error: {e}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)
  except train.TrainingInterrupted as e:
    print(f"\njaxlearn: {e}", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)
  headline = {k: v for k, v in summary.items() if k not in ("history", "config")}
  print(json.dumps(headline, indent=2))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
