"""Turning Ctrl-C / SIGTERM into a clean stop at the next step boundary.

A signal arriving mid-step would leave the donated train state half-updated;
instead the loop sees `stop.requested`, saves the `latest` checkpoint and exits.
A second Ctrl-C stops at once.
"""

import contextlib
import signal
import threading

from absl import logging


class StopRequest:
  requested: bool = False


@contextlib.contextmanager
def catch_stop_signals():
  """Yields a StopRequest whose `requested` turns True on the first SIGINT/SIGTERM."""
  stop = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield stop  # Signal handlers can only be set from the main thread.
    return

  def handle(signum, frame):
    if stop.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    stop.requested = True
    logging.warning("%s received: stopping after this step and saving a checkpoint (press "
                    "Ctrl-C again to stop at once).", signal.Signals(signum).name)

  previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield stop
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
