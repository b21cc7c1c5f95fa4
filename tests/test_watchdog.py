"""The watchdog ends a process whose guarded wait outlives the timeout, in one line and within bounded time."""

import os
import subprocess
import sys
import time

from conftest import REPO, xla_flags
from test_bad_input import train_args

_GUARDED_SLEEP = """
import sys, time
from imagenet_train import watchdog
guard = watchdog.Watchdog(float(sys.argv[1]))
with guard.guard("a wait that finishes"):
  time.sleep(0.1)
with guard.guard("the outer wait"):
  with guard.guard("a quick inner wait"):
    pass
  print("inner done", flush=True)
  time.sleep(float(sys.argv[2]))
print("outer done", flush=True)
"""

# `train` whose checkpoint write at step 2 never finishes, as on a hung file system or with a peer that never
# signals Orbax; step 1's is written.
_HUNG_CHECKPOINTS = """
import sys, threading
from imagenet_train import checkpoint, __main__ as cli
save = checkpoint.Checkpointer.save
def hung_save(self, step, *args, **kwargs):
  if step == 2:
    threading.Event().wait()
  return save(self, step, *args, **kwargs)
checkpoint.Checkpointer.save = hung_save
sys.argv = ["imagenet_train", *sys.argv[1:]]
cli.run()
"""


def _run(script, *args, timeout=300):
  start = time.monotonic()
  result = subprocess.run(
    [sys.executable, "-c", script, *map(str, args)],
    cwd=REPO,
    env={**os.environ, "XLA_FLAGS": xla_flags(1)},
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  return result, time.monotonic() - start


def test_a_wait_past_the_timeout_ends_the_process_naming_it():
  result, seconds = _run(_GUARDED_SLEEP, 1, 60)
  assert result.returncode == 1 and seconds < 30, (seconds, result.stderr)
  assert result.stdout == "inner done\n"  # the inner guard ended without restarting the outer's clock
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert errors == [
    "error: the outer wait did not finish within --config.watchdog_timeout_s=1 s: another process may hang or the "
    "file system may be stuck; check the other processes' logs and the workdir's disk, then rerun to resume from "
    "the newest checkpoint (or raise the timeout if it is only slow)"
  ]


def test_waits_within_the_timeout_pass():
  result, _ = _run(_GUARDED_SLEEP, 5, 0.5)
  assert result.returncode == 0 and result.stdout == "inner done\nouter done\n", result.stderr


def test_a_hung_checkpoint_write_ends_the_run_and_the_rerun_resumes(config, tmp_path):
  # The timeout leaves room for step 2's evaluation to compile on a loaded 2-core machine before the save hangs.
  args = train_args(config, tmp_path, "--config.watchdog_timeout_s=45", "--config.checkpoint_every_steps=1")
  result, _ = _run(_HUNG_CHECKPOINTS, *args)
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith(
    "error: training step 2 did not finish within --config.watchdog_timeout_s=45 s"
  ), result.stderr[-3000:]
  # The run was killed holding the workdir's lock: the rerun takes the stale lock over and resumes from step 1.
  rerun = subprocess.run(
    [sys.executable, "-m", "imagenet_train", *args],
    cwd=REPO,
    env={**os.environ, "XLA_FLAGS": xla_flags(1)},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "taking the lock over" in rerun.stderr and "starting at step 1" in rerun.stderr
