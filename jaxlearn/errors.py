"""Errors jaxlearn raises for bad input: each message names the problem and the fix."""


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
