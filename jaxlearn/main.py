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

from jaxlearn.errors import EXIT_INTERRUPTED


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
import logging as std_logging

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxlearn import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and summary;"
                               " rerunning on the same one resumes training.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                          lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])
# Many processes, one run (jaxlearn.training.distributed): the same three flags on every process.
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "HOST:PORT of process 0's "
                                   "coordinator, for a run over several processes.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "How many processes the run has.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index, 0 to N-1.")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout_s", 30, "A process that stops answering "
                                  "this long ends the others with an error.")
_LOG_PREFIX = flags.DEFINE_bool("log_prefix", False, "Start each console line with absl's level, "
                                "time and source (WORKDIR/train.log always has them).")


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing; any bad flag or config file ends in one message and exit 2."""
  return cli.parse_config_flags(argv, _CONFIG)


def _keep_the_log_in(workdir: str) -> None:
  """The full log (absl's format) also goes to WORKDIR/train.log (see cli.RunLog)."""
  from jaxlearn.runs.workdir import RunDir  # pylint: disable=import-outside-toplevel
  run_dir = RunDir(workdir)
  run_log = cli.RunLog(run_dir.log, run_dir.metrics)
  run_log.addFilter(cli.only_jaxlearn_info)
  std_logging.getLogger().addHandler(run_log)


def _exit_interrupted(when: str):
  print(f"\njaxlearn: stopped by Ctrl-C or SIGTERM {when}.", file=sys.stderr)
  sys.exit(EXIT_INTERRUPTED)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().python_handler.addFilter(cli.only_jaxlearn_info)
  if not _LOG_PREFIX.value:
    cli.log_plainly()
  try:
    # pylint: disable-next=import-outside-toplevel
    from jaxlearn.errors import JaxlearnError, TrainingInterrupted
    from jaxlearn.training import distributed, train  # pylint: disable=import-outside-toplevel
    try:
      distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                             _HEARTBEAT.value)
      if distributed.is_primary():  # Process 0 speaks for the run, and keeps its log.
        _keep_the_log_in(_WORKDIR.value)
      else:
        logging.set_verbosity(logging.WARNING)
      summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except JaxlearnError as e:
      cli.fail(str(e))
    except TrainingInterrupted as e:
      print(f"\njaxlearn: {e}", file=sys.stderr)
      sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # pylint: disable=broad-except  # A collective's error names no type.
      if distributed.is_peer_lost(e):
        distributed.exit_peer_lost(str(e))
      raise
  except KeyboardInterrupt:  # A second Ctrl-C inside the training loop.
    _exit_interrupted("(at once); checkpoints already in the workdir are kept, and rerunning "
                      "the same command resumes from the latest")
  from jaxlearn.training.progress import describe  # pylint: disable=import-outside-toplevel
  if distributed.is_primary():
    print(describe(summary, _WORKDIR.value))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
