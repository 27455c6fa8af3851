"""Command line: `python -m jaxlearn.main --config=configs/mnist_lenet.py --workdir=DIR`.

Any config field can be overridden, e.g. `--config.optimizer.learning_rate=0.05`;
configs are locked, so a misspelled field is an error rather than ignored.
Exit codes: 0 done, 2 bad input (one message that names the problem and the
fix), 3 another process of a many-process run stopped (start them all again to
resume), 130 stopped by Ctrl-C or SIGTERM (at any moment, start-up included).
"""

import os
import signal
import sys

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _stop_now(signum, frame):
  """Outside the training loop (start-up, testing) a stop ends the process at once.

  At once, not by an exception: imports and libraries may swallow a
  KeyboardInterrupt. Nothing is left half-written: the workdir's files are
  written whole and renamed into place, and checkpoints are saved inside the
  loop, whose own handlers save one before stopping.
  """
  del frame
  os.write(2, f"\njaxlearn: stopped by {signal.Signals(signum).name}. Checkpoints already in "
              "the workdir are kept; rerun the same command to resume.\n".encode())
  os._exit(EXIT_INTERRUPTED)  # pylint: disable=protected-access


if __name__ == "__main__":
  for _signal in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_signal, _stop_now)

# pylint: disable=wrong-import-position
import importlib.util
import logging as std_logging

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and summary;"
                               " rerunning on the same one resumes training.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                          lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])
# Many processes, one run (jaxlearn.distributed): the same three flags on every process.
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "HOST:PORT of process 0's "
                                   "coordinator, for a run over several processes.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "How many processes the run has.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index, 0 to N-1.")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout_s", 30, "A process that stops answering "
                                  "this long ends the others with an error.")


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing; any bad flag or config file ends in one message and exit 2."""
  try:
    rest = flags.FLAGS(argv)
    # config_flags defers a load failure to the config's first use: check the file now.
    problem = _config_file_problem(argv)
    if problem:
      _exit_bad_input(problem)
    _CONFIG.value  # pylint: disable=pointless-statement  # Applies the overrides now too.
    return rest
  except Exception as e:  # pylint: disable=broad-except  # absl and config files raise many kinds.
    message = _config_file_problem(argv) or _unknown_override_message(argv) or _flag_problem(e)
    _exit_bad_input(message)


def _config_file_problem(argv: list[str]) -> str | None:
  """A --config file that is missing, or that fails to run or to give a get_config()."""
  path = _config_path(argv)
  if path is None:
    return None
  if not os.path.isfile(path):
    return (f"The config file {path!r} (--config) does not exist; pass one of configs/*.py, "
            "e.g. --config=configs/mnist_lenet.py.")
  try:
    _load_config(path)
  except SyntaxError as e:
    return (f"The config file {path} has a syntax error at line {e.lineno}: {e.msg}. Fix it, "
            "or start from a file in configs/.")
  except Exception as e:  # pylint: disable=broad-except  # Whatever the file's code raises.
    return (f"The config file {path} failed to give a config ({type(e).__name__}: {e}); it must "
            "define get_config() returning an ml_collections.ConfigDict (see configs/).")
  return None


def _flag_problem(error: Exception) -> str:
  """absl's own message, cut to its first line (e.g. a value of the wrong type)."""
  text = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
  return (f"{text}. Check the flag's spelling and value type (see the README's config keys; "
          "booleans are True/False, tuples are written as '(1, 2)').")


def _config_path(argv: list[str]) -> str | None:
  return next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)


def _load_config(path: str):
  spec = importlib.util.spec_from_file_location("_jaxlearn_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _unknown_override_message(argv: list[str]) -> str | None:
  """Names the first `--config.a.b=v` whose key is not in the config file's get_config()."""
  config_path = _config_path(argv)
  if config_path is None:
    return None
  config = _load_config(config_path)
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


def _exit_bad_input(message: str):
  print(f"\njaxlearn: error: {message}", file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


def _exit_interrupted(when: str):
  print(f"\njaxlearn: stopped by Ctrl-C or SIGTERM {when}.", file=sys.stderr)
  sys.exit(EXIT_INTERRUPTED)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().python_handler.addFilter(_only_jaxlearn_info)
  try:
    from jaxlearn import distributed, train  # pylint: disable=import-outside-toplevel
    from jaxlearn.errors import JaxlearnError  # pylint: disable=import-outside-toplevel
    try:
      distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                             _HEARTBEAT.value)
      if not distributed.is_primary():  # Process 0 speaks for the run.
        logging.set_verbosity(logging.WARNING)
      summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except JaxlearnError as e:
      _exit_bad_input(str(e))
    except train.TrainingInterrupted as e:
      print(f"\njaxlearn: {e}", file=sys.stderr)
      sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # pylint: disable=broad-except  # A collective's error names no type.
      if distributed.is_peer_lost(e):
        distributed.exit_peer_lost(str(e))
      raise
  except KeyboardInterrupt:  # A second Ctrl-C inside the training loop.
    _exit_interrupted("(at once); checkpoints already in the workdir are kept, and rerunning "
                      "the same command resumes from the latest")
  from jaxlearn.progress import describe  # pylint: disable=import-outside-toplevel
  if distributed.is_primary():
    print(describe(summary, _WORKDIR.value))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
