"""One run per workdir: a lock file, `<workdir>/lock.json`, held by process 0 while it trains.

A second `train` or `import-weights` on a workdir that a live run holds is refused at once, naming
the holder. A lock left by a process that died is recognised as stale and taken over with a warning:
on the holder's host by its PID and start time, from another host by its heartbeat (the file's
mtime, renewed every `HEARTBEAT_SECONDS`). The other processes of a multi-host run share the
workdir and take no lock; a bucket workdir (gs://) cannot be locked and is only warned about.
"""

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import jax
from absl import logging

from imagenet_train.errors import UserError

LOCK_FILE = "lock.json"
HEARTBEAT_SECONDS = 30
# Ten missed heartbeats: a holder on another host that is this late has died or lost its host.
STALE_AFTER_SECONDS = 10 * HEARTBEAT_SECONDS


@contextlib.contextmanager
def hold(workdir: str, command: str) -> Iterator[None]:
  """Holds the workdir's lock for the block; raises UserError when a live run holds it.

  Call it after `distributed.initialize`: only process 0 takes the lock.
  """
  if jax.process_index() != 0:
    yield
    return
  if "://" in workdir:
    logging.warning(
      "Workdir %s is on a bucket, where a lock cannot be taken atomically: nothing stops a second run "
      "from writing to it at the same time",
      workdir,
    )
    yield
    return
  lock = os.path.join(workdir, LOCK_FILE)
  ours = json.dumps(_record(command)).encode()
  try:
    os.makedirs(workdir, exist_ok=True)
    _acquire(workdir, lock, ours)
  except OSError as error:
    raise UserError(
      f"cannot take the lock {lock} ({error.strerror or error}): pass a --workdir you can write to"
    ) from None
  stop = threading.Event()
  beat = threading.Thread(target=_heartbeat, args=(lock, ours, stop), name="workdir-lock-heartbeat", daemon=True)
  beat.start()
  try:
    yield
  finally:
    stop.set()
    beat.join()
    # A lock another process took over (after judging ours stale) is theirs now: leave it.
    if _is_ours(lock, ours):
      os.unlink(lock)


def _record(command: str) -> dict:
  """What the lock says about its holder, for the staleness check and for the refusal's message."""
  pid = os.getpid()
  return {
    "host": socket.gethostname(),
    "pid": pid,
    "start_time": _start_time(pid),
    "command": command,
    "taken_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
  }


def _proc_stat(pid: int) -> tuple[str, int] | None:
  """The state letter and start time (clock ticks since boot) of a process; None without /proc."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      text = f.read()
  except OSError:
    return None
  # The command name (field 2) may hold spaces and parentheses; the fields after its last ")" do not.
  fields = text[text.rindex(")") + 2 :].split()
  return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def _start_time(pid: int) -> int | None:
  stat = _proc_stat(pid)
  return None if stat is None else stat[1]


def _acquire(workdir: str, lock: str, ours: bytes) -> None:
  """Creates the lock, first removing a stale one; raises UserError when a live holder has it."""
  # Each pass either takes the lock, refuses, or retries because another process changed it meanwhile.
  while True:
    if _create(lock, ours):
      return
    try:
      raw, age = _read(lock)
    except FileNotFoundError:
      continue  # released since our attempt
    holder = _parse(raw)
    why = _why_stale(holder, age)
    if why is None:
      raise UserError(_in_use_message(workdir, lock, holder, age))
    if _remove_if_unchanged(lock, raw):
      logging.warning("Workdir %s was locked by %s, which %s: taking the lock over", workdir, _describe(holder), why)


def _create(lock: str, ours: bytes) -> bool:
  """Creates the lock file if there is none; O_EXCL makes this atomic, also on NFS (v3 and later)."""
  try:
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "wb") as f:
    f.write(ours)
  return True


def _read(lock: str) -> tuple[bytes, float]:
  """The lock file's bytes and its heartbeat's age in seconds."""
  with open(lock, "rb") as f:
    mtime = os.fstat(f.fileno()).st_mtime
    return f.read(), time.time() - mtime


def _parse(raw: bytes) -> dict | None:
  """The holder's record; None for a file that is not one (half-written, or damaged)."""
  try:
    record = json.loads(raw)
  except ValueError:
    return None
  valid = (
    isinstance(record, dict)
    and isinstance(record.get("host"), str)
    and isinstance(record.get("pid"), int)
    and record["pid"] > 0  # os.kill(0 or -1, ...) would address process groups, not a process
    and isinstance(record.get("command"), str)
    and isinstance(record.get("taken_at"), str)
  )
  return record if valid else None


def _why_stale(holder: dict | None, age: float) -> str | None:
  """Why the holder is gone (completing "which ..."), or None while it may be alive."""
  if holder is None or holder["host"] != socket.gethostname():
    # No PID to check from here: only a holder that stopped renewing its heartbeat is known dead.
    return f"has not renewed it for {age:.0f} s" if age > STALE_AFTER_SECONDS else None
  pid = holder["pid"]
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return "is no longer running"
  except PermissionError:
    pass  # alive, and another user's
  stat = _proc_stat(pid)
  if stat is None:
    return None  # no /proc: the PID is alive, and nothing tells whether it is still the holder
  state, start_time = stat
  if state == "Z":
    return "has exited"  # its parent has not reaped it yet
  if holder.get("start_time") not in (None, start_time):
    return f"is no longer running (PID {pid} now belongs to another process)"
  return None


def _describe(holder: dict | None) -> str:
  if holder is None:
    return "an unknown process (the lock file is unreadable)"
  return f"`{holder['command']}` of process {holder['pid']} on host {holder['host']} (since {holder['taken_at']})"


def _in_use_message(workdir: str, lock: str, holder: dict | None, age: float) -> str:
  if holder is None:
    return (
      f"workdir {workdir} is in use by an unknown process: its lock {lock} is unreadable and {age:.0f} s old; "
      f"wait until it is {STALE_AFTER_SECONDS} s old and stale, or delete it if no run uses the workdir"
    )
  heartbeat = "" if holder["host"] == socket.gethostname() else f", last heartbeat {age:.0f} s ago"
  return (
    f"workdir {workdir} is in use by {_describe(holder)}{heartbeat}: wait for it to finish, stop it, "
    "or pass another --workdir"
  )


def _remove_if_unchanged(lock: str, stale: bytes) -> bool:
  """Removes the lock if it still holds `stale`; False if another process replaced it meanwhile.

  Moving it aside first, then checking, keeps two processes that both judged the same lock stale
  from each removing it, the second one removing the fresh lock of the first.
  """
  aside = f"{lock}.{uuid.uuid4().hex}.stale"
  try:
    os.rename(lock, aside)
  except FileNotFoundError:
    return False
  with open(aside, "rb") as f:
    moved = f.read()
  if moved != stale:
    os.rename(aside, lock)  # another process took it over first: give its lock back
    return False
  os.unlink(aside)
  return True


def _is_ours(lock: str, ours: bytes) -> bool:
  try:
    with open(lock, "rb") as f:
      return f.read() == ours
  except FileNotFoundError:
    return False


def _heartbeat(lock: str, ours: bytes, stop: threading.Event) -> None:
  """Renews the lock's mtime until `stop`, so that other hosts see the holder alive."""
  while not stop.wait(HEARTBEAT_SECONDS):
    try:
      if not _is_ours(lock, ours):
        logging.warning(
          "The lock %s was removed or taken over by another process: nothing stops a second run from "
          "writing to this workdir now",
          lock,
        )
        return
      # Should it be replaced between the check and here, this only renews the new holder's lock.
      os.utime(lock)
    except OSError as error:  # a passing network file system error: the next beat tries again
      logging.warning("Cannot renew the lock %s (%s)", lock, error.strerror or error)
