"""What every jaxlearn command shares: its flags, one-line errors, and stopping at once.

Exit codes (`jaxlearn.errors`): 0 done, 2 bad input (one message naming the
problem and the fix), 130 stopped by Ctrl-C or SIGTERM. The commands
(evaluate, predict, export, serve, ...) start through `run(main)`; those that
read a `--config` file (training, writing records) check it with
`parse_config_flags`. The flags several commands take are defined once here.
"""

import importlib.util
import logging as std_logging
import os
import signal
import sys
import time

from absl import app
from absl import flags
from absl import logging

from jaxlearn.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED


def fail(message: str):
  """Prints `jaxlearn: error: <message>` and exits 2."""
  print(f"\njaxlearn: error: {message}", file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{str(e).strip().splitlines()[0]}. Run with --helpfull for the flags.")


def parse_config_flags(argv: list[str], config_flag) -> list[str]:
  """absl flag parsing for a command with a `--config` file (`config_flag`, from
  `config_flags.DEFINE_config_file`): any bad flag, config file or override
  ends in one message and exit 2."""
  try:
    rest = flags.FLAGS(argv)
    # config_flags defers a load failure to the config's first use: check the file now.
    problem = _config_file_problem(argv)
    if problem:
      fail(problem)
    config_flag.value  # pylint: disable=pointless-statement  # Applies the overrides now too.
    return rest
  except Exception as e:  # pylint: disable=broad-except  # absl and config files raise many kinds.
    message = _config_file_problem(argv) or _unknown_override_message(argv) or _flag_problem(e)
    fail(message)


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
  first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  text = first_line.rstrip(".")
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


def _stop(signum, frame):
  del frame
  print(f"\njaxlearn: stopped by {signal.Signals(signum).name}.", file=sys.stderr)
  sys.exit(EXIT_INTERRUPTED)


def run(main, *, keep_sigterm: bool = False, flags_parser=_parse_flags) -> None:
  """absl's app.run with jaxlearn's exit codes; JaxlearnErrors become one message and exit 2.

  `keep_sigterm` leaves SIGTERM to the command (a server drains its requests);
  a command with a `--config` file passes `parse_config_flags` as `flags_parser`.
  """
  signal.signal(signal.SIGINT, _stop)
  if not keep_sigterm:
    signal.signal(signal.SIGTERM, _stop)

  def guarded(argv):
    from jaxlearn.errors import JaxlearnError  # pylint: disable=import-outside-toplevel
    logging.set_verbosity(logging.WARNING)
    try:
      return main(argv)
    except JaxlearnError as e:
      fail(str(e))

  app.run(guarded, flags_parser=flags_parser)


def define_workdir_flag() -> None:
  """--workdir, required: the finished run an after-training command reads."""
  flags.DEFINE_string("workdir", None, "A finished training run's workdir.")
  flags.mark_flags_as_required(["workdir"])


def define_out_flag(what: str, required: bool = True) -> None:
  """--out: the folder an artifact is written into."""
  flags.DEFINE_string("out", None if required else "", what)
  if required:
    flags.mark_flags_as_required(["out"])


def define_data_dir_flag() -> None:
  """--data_dir: where a finished run's data is now (default: where training read it)."""
  flags.DEFINE_string("data_dir", "", "The folder holding the run's dataset (ROOT/<name>/); "
                      "empty: where training read it.")


def define_split_flag(what: str = "The split to evaluate, cut as in training.") -> None:
  from jaxlearn.runs.workdir import EVALUATED_SPLITS  # pylint: disable=import-outside-toplevel
  flags.DEFINE_enum("split", "test", list(EVALUATED_SPLITS), what)


class _PlainFormatter(std_logging.Formatter):
  """An INFO line as its message alone; other levels named ("WARNING: ...")."""

  def format(self, record) -> str:
    text = record.getMessage()
    return text if record.levelno == std_logging.INFO else f"{record.levelname}: {text}"


def only_jaxlearn_info(record) -> bool:
  """Keeps the log readable: INFO lines from jaxlearn, warnings and errors from anyone."""
  return record.levelno >= std_logging.WARNING or "jaxlearn" in record.pathname


def log_plainly() -> None:
  """The console shows each log line without absl's level, time and source prefix."""
  logging.get_absl_handler().setFormatter(_PlainFormatter())


class RunLog(std_logging.Handler):
  """The full log, in absl's format, in WORKDIR/train.log: the lines of this process's run.

  Lines are held back until this process has written to the run's metrics
  (`marker_path`, WORKDIR/metrics.jsonl: the first training window, or the
  test of a finished run), so a workdir that is refused (another run's, in
  use, a corrupt checkpoint) is left exactly as it was.
  """

  def __init__(self, path: str, marker_path: str):
    super().__init__(std_logging.INFO)
    self.setFormatter(logging.PythonFormatter())
    self._path, self._marker_path, self._started = path, marker_path, time.time()
    self._held, self._file = [], None

  def emit(self, record) -> None:
    try:
      line = self.format(record) + "\n"
      if self._file is None and self._claimed():
        self._file = open(self._path, "a", encoding="utf-8")
        self._file.writelines(self._held)
        self._held = []
      if self._file is None:
        self._held.append(line)
      else:
        self._file.write(line)
        self._file.flush()
    except Exception:  # pylint: disable=broad-except  # Logging must never end a run.
      self.handleError(record)

  def _claimed(self) -> bool:
    try:
      return os.path.getmtime(self._marker_path) >= self._started
    except OSError:
      return False

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
    super().close()
