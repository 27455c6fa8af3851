"""What every jaxlearn command shares: exit codes, one-line errors, and stopping at once.

Exit codes: 0 done, 2 bad input (one message naming the problem and the fix),
130 stopped by Ctrl-C or SIGTERM. `jaxlearn.main` (training) keeps its own
flag parsing for config files; the other commands (evaluate, predict,
export, serve) start through `run(main)`.
"""

import signal
import sys

from absl import app
from absl import flags
from absl import logging

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def fail(message: str):
  """Prints `jaxlearn: error: <message>` and exits 2."""
  print(f"\njaxlearn: error: {message}", file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{str(e).strip().splitlines()[0]}. Run with --helpfull for the flags.")


def _stop(signum, frame):
  del frame
  print(f"\njaxlearn: stopped by {signal.Signals(signum).name}.", file=sys.stderr)
  sys.exit(EXIT_INTERRUPTED)


def run(main, *, keep_sigterm: bool = False) -> None:
  """absl's app.run with jaxlearn's exit codes; JaxlearnErrors become one message and exit 2.

  `keep_sigterm` leaves SIGTERM to the command (a server drains its requests).
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

  app.run(guarded, flags_parser=_parse_flags)
