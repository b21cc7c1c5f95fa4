"""Failed writes (a full disk, a quota, a read-only or failing disk) as one line: what could not be written, where,
why, how much space is free there, and the step a rerun resumes from.

Checkpoints, metrics and result files are written by Orbax's, CLU's and TensorFlow's threads as well as by ours, and
each library words the failure its own way: an OSError, TensorStore's ValueError ("... No space left on device
[os_error_code='28']"), TensorFlow's ResourceExhaustedError ("...; No space left on device"). `failure` finds the errno
in any of them, or in the exceptions they came from. The writer threads also log the failure with its traceback when
it happens, before the main thread meets it at its next save, wait, flush or close; `quiet_background_failures` drops
those logs, and what Orbax's abandoned writes print later, since the one line reports the failure.
"""

import contextlib
import errno
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator

from absl import logging as absl_logging
from etils import epath

from imagenet_train.errors import UserError

SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write that lacks space, whose fix is to free some
_PERMISSION_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
_WRITE_ERRNOS = (*SPACE_ERRNOS, *_PERMISSION_ERRNOS, errno.EIO)  # those TensorFlow's errors are searched for
_TENSORSTORE_ERRNO = re.compile(r"\[os_error_code='?(\d+)'?\]")


def write_errno(error: BaseException) -> int | None:
  """The errno of the failed write that `error`, or an exception it came from, reports; None if it reports none."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      return error.errno
    text = str(error)
    code = _TENSORSTORE_ERRNO.search(text)
    if code:
      return int(code.group(1))
    # TensorFlow's errors carry no errno, only the system's words for it.
    named = next((number for number in _WRITE_ERRNOS if os.strerror(number) in text), None)
    if named is not None:
      return named
    error = error.__cause__ or error.__context__
  return None


def free_space(path: str) -> str | None:
  """'12.3 MB free there' for the disk of `path` (its nearest existing folder); None for a bucket (gs://)."""
  if "://" in path:
    return None
  folder = os.path.abspath(path)
  while not os.path.isdir(folder):
    folder = os.path.dirname(folder)
  try:
    free = shutil.disk_usage(folder).free
  except OSError:
    return None
  for unit, size in (("GB", 1e9), ("MB", 1e6)):
    if free >= size:
      return f"{free / size:.1f} {unit} free there"
  return f"{free / 1e3:.0f} KB free there"


def newest_checkpoint(directory: str) -> int | None:
  """The newest step in a checkpoint `directory`, the one a rerun resumes from: on a local disk Orbax gives a step's
  folder its bare number only once the save has finished."""
  path = epath.Path(directory)
  try:
    steps = [int(step.name) for step in path.iterdir() if step.name.isdigit()] if path.exists() else []
  except OSError:
    return None
  return max(steps, default=None)


def failure(error: BaseException, what: str, where: str, resume_dir: str | None = None) -> UserError | None:
  """The UserError (exit status 1) for `error`, raised while writing `what` to the folder `where`, when it is a
  failed write; None when it is not. With `resume_dir`, a checkpoint directory, it names the step a rerun resumes
  from."""
  number = None if isinstance(error, UserError) else write_errno(error)
  if number is None:
    return None
  reason = "; ".join(filter(None, [os.strerror(number), free_space(where)]))
  if number in SPACE_ERRNOS:
    fix = "free space or pass a --workdir on a larger disk"
  elif number in _PERMISSION_ERRNOS:
    fix = "make it writable or pass another --workdir"
  else:
    fix = "check that disk or pass a --workdir on another"
  if resume_dir is None:
    then = "then rerun"
  else:
    step = newest_checkpoint(resume_dir)
    then = f"then rerun to resume from step {step}" if step is not None else "then rerun, which starts afresh"
  return UserError(f"cannot write {what} to {where} ({reason}): {fix}, {then}", exit_code=1)


@contextlib.contextmanager
def reported(what: str, where: str, resume_dir: str | None = None, partial: str | None = None) -> Iterator[None]:
  """Raises a failed write in the block as `failure`'s UserError, after deleting `partial`, the file the block was
  writing: a truncated summary or result file would be read as a whole one. Other exceptions pass unchanged."""
  try:
    yield
  except Exception as error:
    user_error = failure(error, what, where, resume_dir)
    if user_error is None:
      raise
    if partial is not None:
      with contextlib.suppress(OSError):
        epath.Path(partial).unlink(missing_ok=True)
    raise user_error from None


def write_text(path: str, text: str, what: str, resume_dir: str | None = None) -> None:
  """Writes `text` to a local or bucket (gs://) file; a failed write is `failure`'s UserError, and leaves no file."""
  with reported(what, os.fspath(epath.Path(path).parent), resume_dir, partial=path):
    epath.Path(path).write_text(text)


class _QuietBackgroundFailures(logging.Filter):
  """Drops the error logs, with their tracebacks, of a failed write in Orbax's and CLU's writer threads, and
  asyncio's for Orbax's writes abandoned when a save fails: the main thread reports that failure in one line."""

  def filter(self, record):
    if record.levelno < logging.ERROR or not record.exc_info or write_errno(record.exc_info[1]) is None:
      return True
    if "/asyncio/" in record.pathname:  # "Task exception was never retrieved", naming the task's coroutine
      return "/orbax/" not in record.getMessage()
    return not any(part in record.pathname for part in ("/orbax/", "/clu/"))


def _abandoned_orbax_work(unraisable) -> bool:
  """A leftover of a failed Orbax save or restore: a TensorStore callback meeting Orbax's closed event loop, or one
  of its coroutines collected at exit. Reads only attributes: at exit, imports fail."""
  if isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed":
    return True
  code = getattr(unraisable.object, "cr_code", None)
  if "/orbax/" in getattr(code, "co_filename", ""):
    return True
  return getattr(unraisable.object, "__qualname__", "") == "_read_array_index_and_device_put"  # a restore's read


def quiet_abandoned_orbax_work() -> None:
  """Installs a sys.unraisablehook dropping `_abandoned_orbax_work`, which Python would print as hundreds of lines
  of tracebacks burying the one line that reports the failure; anything else passes to the previous hook."""
  previous = sys.unraisablehook
  if getattr(previous, "drops_abandoned_orbax_work", False):
    return

  def hook(unraisable):
    if not _abandoned_orbax_work(unraisable):
      previous(unraisable)

  hook.drops_abandoned_orbax_work = True
  sys.unraisablehook = hook


def quiet_background_failures() -> None:
  """Installs the filter on the console's log handler, and `quiet_abandoned_orbax_work`."""
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _QuietBackgroundFailures) for f in handler.filters):
    handler.addFilter(_QuietBackgroundFailures())
  quiet_abandoned_orbax_work()
