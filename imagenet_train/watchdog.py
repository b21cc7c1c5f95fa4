"""A watchdog for the waits that can block forever: a collective whose peer hangs (alive, so JAX's heartbeat does
not see it), Orbax's cross-process signalling or its background writes on a stuck file system.

Such a wait sits in C++ where no Python exception reaches it, so the watchdog, a daemon thread, ends the process
when a guarded block outlives `--config.watchdog_timeout_s`: one `error:` line naming what did not finish, and exit
status 1. Nothing already written is lost: a checkpoint Orbax had not committed is a temporary folder, which the
next `train` moves aside before it resumes from the newest committed one.
"""

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator

# How often the thread looks at the deadline: a hang is reported at most this much later than the timeout.
_POLL_SECONDS = 0.5


class Watchdog:
  """Guards blocks with one deadline at a time; a nested guard's deadline replaces its parent's until it ends."""

  def __init__(self, timeout_s: float):
    self.timeout_s = timeout_s
    self._guarded: tuple[str, float] | None = None  # (what, deadline)
    self._lock = threading.Lock()
    self._stopped = threading.Event()
    self._thread = threading.Thread(target=self._watch, name="imagenet_train-watchdog", daemon=True)
    self._thread.start()

  @contextlib.contextmanager
  def guard(self, what: str) -> Iterator[None]:
    """Ends the process if the block has not finished `timeout_s` from now; `what` completes "... did not
    finish", e.g. "saving checkpoint step 2000"."""
    with self._lock:
      outer, self._guarded = self._guarded, (what, time.monotonic() + self.timeout_s)
    try:
      yield
    finally:
      with self._lock:
        self._guarded = outer

  def close(self) -> None:
    self._stopped.set()
    self._thread.join()

  def _watch(self) -> None:
    while not self._stopped.wait(_POLL_SECONDS):
      with self._lock:
        guarded = self._guarded
      if guarded is not None and time.monotonic() > guarded[1]:
        what = guarded[0]
        print(
          f"error: {what} did not finish within --config.watchdog_timeout_s={self.timeout_s:g} s: another process "
          "may hang or the file system may be stuck; check the other processes' logs and the workdir's disk, then "
          "rerun to resume from the newest checkpoint (or raise the timeout if it is only slow)",
          file=sys.stderr,
          flush=True,
        )
        os._exit(1)  # the blocked wait holds the main thread where no exception can reach it
