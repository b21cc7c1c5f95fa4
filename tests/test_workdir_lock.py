"""The workdir lock: a live run refuses a second one, a dead run's lock is taken over, races have one winner."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import pytest

from imagenet_train import workdir_lock
from imagenet_train.errors import UserError

from conftest import REPO, xla_flags
from test_bad_input import assert_user_error, run_cli, train_args

# Holds the lock on argv[1] once stdin says "go", reports "held" or "refused: <message>", and keeps the
# lock until stdin closes.
_HOLDER = """
import sys
from imagenet_train import workdir_lock
from imagenet_train.errors import UserError
print("ready", flush=True)
sys.stdin.readline()
try:
  with workdir_lock.hold(sys.argv[1], "train"):
    print("held", flush=True)
    sys.stdin.read()
except UserError as error:
  print("refused:", error, flush=True)
"""


def _start_holders(workdir, count=1):
  """`count` processes ready to take the lock, their imports done."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  processes = [
    subprocess.Popen(
      [sys.executable, "-c", _HOLDER, str(workdir)],
      cwd=REPO,
      env=env,
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
    )
    for _ in range(count)
  ]
  for process in processes:
    assert process.stdout.readline() == "ready\n"
  return processes


def _go(processes):
  for process in processes:
    process.stdin.write("go\n")
    process.stdin.flush()
  return [process.stdout.readline().strip() for process in processes]


def _write_lock(workdir, age=0.0, **fields):
  """A lock as another run would write it, its heartbeat `age` seconds old."""
  record = {"host": "elsewhere", "pid": 4242, "start_time": 1, "command": "train", "taken_at": "then", **fields}
  path = workdir / workdir_lock.LOCK_FILE
  path.write_text(json.dumps(record))
  os.utime(path, (time.time() - age,) * 2)
  return path


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.name == "absl" and r.levelno == logging.WARNING]


def test_a_live_holder_refuses_and_its_lock_is_taken_over_once_it_is_killed(tmp_path, caplog):
  (holder,) = _start_holders(tmp_path)
  assert _go([holder]) == ["held"]
  with pytest.raises(UserError) as refusal:
    with workdir_lock.hold(str(tmp_path), "import-weights"):
      pass
  message = str(refusal.value)
  assert "\n" not in message
  assert f"process {holder.pid} on host {socket.gethostname()}" in message
  assert f"workdir {tmp_path} is in use by `train`" in message

  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with caplog.at_level(logging.WARNING, logger="absl"):
    with workdir_lock.hold(str(tmp_path), "train"):
      assert json.loads((tmp_path / "lock.json").read_text())["pid"] == os.getpid()
  (warning,) = _warnings(caplog)
  assert f"process {holder.pid} on host {socket.gethostname()}" in warning
  assert "is no longer running: taking the lock over" in warning
  assert not (tmp_path / "lock.json").exists()


def test_a_killed_holder_not_yet_reaped_is_stale(tmp_path, caplog):
  (holder,) = _start_holders(tmp_path)
  assert _go([holder]) == ["held"]
  holder.send_signal(signal.SIGKILL)
  # Wait until it has exited without reaping it: a zombie still answers os.kill(pid, 0).
  while os.waitid(os.P_PID, holder.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
    time.sleep(0.01)
  with caplog.at_level(logging.WARNING, logger="absl"):
    with workdir_lock.hold(str(tmp_path), "train"):
      pass
  holder.wait()
  (warning,) = _warnings(caplog)
  assert f"process {holder.pid}" in warning and "has exited" in warning


def test_another_hosts_lock_is_stale_only_once_its_heartbeat_is_old(tmp_path, caplog):
  _write_lock(tmp_path, age=60)
  with pytest.raises(UserError, match=r"process 4242 on host elsewhere \(since then\), last heartbeat 60 s ago"):
    with workdir_lock.hold(str(tmp_path), "train"):
      pass

  _write_lock(tmp_path, age=workdir_lock.STALE_AFTER_SECONDS + 100)
  with caplog.at_level(logging.WARNING, logger="absl"):
    with workdir_lock.hold(str(tmp_path), "train"):
      pass
  (warning,) = _warnings(caplog)
  assert "process 4242 on host elsewhere" in warning and "has not renewed it for 400 s" in warning


def test_an_unreadable_lock_is_live_while_fresh_and_stale_once_old(tmp_path, caplog):
  path = tmp_path / "lock.json"
  path.write_text('{"host": "half-writ')
  with pytest.raises(UserError, match="in use by an unknown process: its lock .* is unreadable"):
    with workdir_lock.hold(str(tmp_path), "train"):
      pass
  old = time.time() - workdir_lock.STALE_AFTER_SECONDS - 1
  os.utime(path, (old, old))
  with caplog.at_level(logging.WARNING, logger="absl"):
    with workdir_lock.hold(str(tmp_path), "train"):
      pass
  (warning,) = _warnings(caplog)
  assert "an unknown process" in warning


def test_a_reused_pid_is_told_apart_by_its_start_time(tmp_path, caplog):
  with workdir_lock.hold(str(tmp_path), "train"):
    record = json.loads((tmp_path / "lock.json").read_text())
    # The lock names this very process, alive: a second hold here is refused like any other.
    with pytest.raises(UserError, match=f"process {os.getpid()} on host"):
      with workdir_lock.hold(str(tmp_path), "train"):
        pass
  assert isinstance(record["start_time"], int)

  _write_lock(tmp_path, host=socket.gethostname(), pid=os.getpid(), start_time=record["start_time"] + 1)
  with caplog.at_level(logging.WARNING, logger="absl"):
    with workdir_lock.hold(str(tmp_path), "train"):
      pass
  (warning,) = _warnings(caplog)
  assert f"PID {os.getpid()} now belongs to another process" in warning


def test_the_lock_is_removed_on_exit_even_by_an_exception_but_not_once_replaced(tmp_path):
  workdir = tmp_path / "new" / "workdir"  # created by hold
  with workdir_lock.hold(str(workdir), "train"):
    assert (workdir / "lock.json").exists()
  assert os.listdir(workdir) == []

  with pytest.raises(RuntimeError, match="the block failed"):
    with workdir_lock.hold(str(workdir), "train"):
      raise RuntimeError("the block failed")
  assert os.listdir(workdir) == []

  with workdir_lock.hold(str(workdir), "train"):
    theirs = _write_lock(workdir).read_text()
  assert (workdir / "lock.json").read_text() == theirs


def test_of_processes_racing_for_the_lock_exactly_one_wins(tmp_path):
  processes = _start_holders(tmp_path, count=4)
  answers = _go(processes)
  for process in processes:
    process.stdin.close()
    process.wait(timeout=30)
  assert sorted(answer.split(":")[0] for answer in answers) == ["held"] + ["refused"] * 3
  (winner,) = [p.pid for p, answer in zip(processes, answers) if answer == "held"]
  # A loser that read the lock before the winner had written it names an unknown process instead.
  assert all(f"process {winner} " in a or "unknown process" in a for a in answers if a != "held")
  assert not (tmp_path / "lock.json").exists()


def test_other_processes_of_a_run_and_bucket_workdirs_take_no_lock(tmp_path, monkeypatch, caplog):
  with caplog.at_level(logging.WARNING, logger="absl"):
    with workdir_lock.hold("gs://bucket/run", "train"):
      pass
  (warning,) = _warnings(caplog)
  assert "gs://bucket/run is on a bucket, where a lock cannot be taken atomically" in warning

  _write_lock(tmp_path)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  with workdir_lock.hold(str(tmp_path), "train"):  # process 0 holds the lock for the whole run
    pass


def test_a_second_trainer_is_refused_and_a_killed_trainers_lock_is_taken_over(config, tmp_path):
  workdir = tmp_path / "work"
  log = open(tmp_path / "first.log", "w")
  first = subprocess.Popen(
    [sys.executable, "-m", "imagenet_train", *train_args(config, workdir, "--config.num_train_steps=1000000")],
    cwd=REPO,
    env={**os.environ, "XLA_FLAGS": xla_flags(1)},
    stdout=log,
    stderr=log,
  )
  try:
    deadline = time.monotonic() + 240
    while not (workdir / workdir_lock.LOCK_FILE).exists():
      assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
      time.sleep(0.5)
    assert_user_error(
      *run_cli(*train_args(config, workdir)),
      f"workdir {workdir} is in use by `train` of process {first.pid} on host {socket.gethostname()}",
      "wait for it to finish, stop it, or pass another --workdir",
    )
  finally:
    first.kill()
    first.wait()
    log.close()
  returncode, _, stderr = run_cli(*train_args(config, workdir))
  assert returncode == 0, stderr[-3000:]
  assert f"process {first.pid} on host {socket.gethostname()}" in stderr and "taking the lock over" in stderr
  assert not (workdir / workdir_lock.LOCK_FILE).exists()  # released at the end
