"""Errors jaxlearn raises for bad input, and the exit codes of its commands.

Each message names the problem and the fix. Exit codes: 0 done, 2 bad input
(one `jaxlearn: error:` paragraph), 3 another process of a many-process run was
lost (start them all again to resume), 130 stopped by Ctrl-C or SIGTERM.
"""

EXIT_BAD_INPUT = 2
EXIT_PEER_LOST = 3
EXIT_INTERRUPTED = 130


class JaxlearnError(Exception):
  """Base class; `jaxlearn.main` prints these as one paragraph and exits non-zero."""


class ConfigError(JaxlearnError):
  """A config value that cannot work (unknown name, impossible batch size, ...)."""


class DataError(JaxlearnError):
  """Missing, truncated or malformed dataset files."""


class MissingFilesError(DataError):
  """A dataset's files are not in the folder they were looked for in (they may be fetched)."""


class CheckpointError(JaxlearnError):
  """A checkpoint that cannot be restored into the configured model."""


class NonFiniteLossError(JaxlearnError):
  """Training produced a NaN/Inf loss; the last good checkpoint is kept."""


class WorkdirError(JaxlearnError):
  """A workdir that holds another run, or that another process is using."""


class DivergedError(JaxlearnError):
  """Training diverged without a NaN (loss far above its best, accuracy at chance)."""


class InputError(JaxlearnError):
  """An input to a trained model (predict, serve, evaluate) that it cannot take."""


class TrainingInterrupted(Exception):
  """Raised after SIGINT/SIGTERM once the `latest` checkpoint holds the current step.

  Not a JaxlearnError: nothing was wrong with the input, and the command exits
  130 (EXIT_INTERRUPTED), not 2.
  """
