"""A full disk ends a run in one line naming what failed, where and the space free there, with exit status 1; the
checkpoints written before stay, and a rerun after space is freed resumes from them to the same parameters.

The disk is a small tmpfs mounted in the test's folder, which needs root; elsewhere those tests skip.
"""

import errno
import os
import re
import shutil
import subprocess

import jax
import numpy as np
import pytest

from imagenet_train import checkpoint, metrics, write_errors
from imagenet_train.errors import UserError

from conftest import final_params
from test_bad_input import run_cli, train_args

DISK_BYTES = 4 * 2**20
# Room for the first LeNet-5 checkpoint (about 0.55 MB) with config.json and the metrics, not for the second.
FIRST_CHECKPOINT_ROOM = 800 * 2**10
RUN = (
  "--config.num_train_steps=6",
  "--config.checkpoint_every_steps=2",
  "--config.log_every_steps=1",
  "--config.eval_every_epochs=100",
)
ONE_LINE = re.compile(
  r"^error: cannot write .+ to .+ \(No space left on device; [\d.]+ [KMG]B free there\): free space or pass a "
  r"--workdir on a larger disk, then rerun(?: to resume from step (\d+)|, which starts afresh)?$"
)


@pytest.fixture
def small_disk(tmp_path):
  """A 4 MB tmpfs at tmp_path/disk, unmounted afterwards."""
  if os.geteuid() != 0:
    pytest.skip("mounting a small tmpfs needs root")
  if shutil.which("mount") is None:
    pytest.skip("no mount command")
  disk = tmp_path / "disk"
  disk.mkdir()
  mounted = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)], capture_output=True, text=True
  )
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
  try:
    yield disk
  finally:
    if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
      subprocess.run(["umount", "-l", str(disk)], check=True)  # a file the test left open: detach it now


def _fill(disk, leave: int = 0):
  """Writes a filler file that leaves `leave` bytes free on `disk`, or none; returns its path."""
  assert os.path.ismount(disk), f"{disk} is not the small tmpfs: filling it would fill the disk under it"
  filler = disk / "filler"
  fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
  try:
    while (free := shutil.disk_usage(disk).free) > leave:
      os.write(fd, bytes(min(2**16, free - leave)))
  except OSError as error:
    if error.errno != errno.ENOSPC:
      raise
  finally:
    os.close(fd)
  return filler


def test_a_full_disk_ends_the_run_in_one_line_and_a_rerun_resumes(config, tmp_path, small_disk):
  workdir = small_disk / "run"
  filler = _fill(small_disk, leave=FIRST_CHECKPOINT_ROOM)
  returncode, last_line, stderr = run_cli(*train_args(config, workdir, *RUN))
  assert returncode == 1, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  assert [line for line in stderr.splitlines() if line.startswith("error:")] == [last_line], stderr[-3000:]
  written = ONE_LINE.match(last_line)
  assert written and written.group(1), last_line
  resume_step = int(written.group(1))
  assert resume_step in (2, 4), last_line  # the second or the third checkpoint failed
  assert (workdir / "checkpoints" / str(resume_step)).is_dir()

  filler.unlink()
  returncode, _, stderr = run_cli(*train_args(config, workdir, *RUN))
  assert returncode == 0, stderr[-3000:]
  assert f"resuming from step {resume_step}" in stderr  # the unfinished save moved aside
  assert f"starting at step {resume_step}" in stderr

  whole = tmp_path / "whole"
  returncode, _, stderr = run_cli(*train_args(config, whole, *RUN))
  assert returncode == 0, stderr[-3000:]
  (whole_step, whole_params), (resumed_step, resumed_params) = final_params(whole), final_params(workdir)
  assert whole_step == resumed_step == 6
  for a, b in zip(jax.tree.leaves(whole_params), jax.tree.leaves(resumed_params)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("enable_async", [False, True])
def test_a_checkpoint_that_does_not_fit_is_one_user_error(small_disk, enable_async):
  ckpt = checkpoint.Checkpointer(str(small_disk / "run"), keep=3, enable_async=enable_async)
  try:
    ckpt.save(1, {"w": np.arange(1000.0)}, {"model": "m"})
    ckpt.wait()
    _fill(small_disk)
    with pytest.raises(UserError) as raised:
      ckpt.save(2, {"w": np.zeros(2**18)}, {"model": "m"})  # 2 MB
      ckpt.wait()
  finally:
    ckpt.close()
  assert raised.value.exit_code == 1
  assert ONE_LINE.match(f"error: {raised.value}"), raised.value
  assert str(raised.value).startswith(f"cannot write checkpoint step 2 to {ckpt.directory} ")
  assert str(raised.value).endswith("then rerun to resume from step 1")


def test_metrics_that_do_not_fit_are_one_user_error(small_disk):
  writer = metrics.create_writer(str(small_disk / "run"), resume_dir=str(small_disk / "run" / "checkpoints"))
  _fill(small_disk)
  with pytest.raises(UserError) as raised:
    for step in range(1, 2001):  # TensorFlow writes whole pages: the first ones fit in the file's last page
      writer.write_scalars(step, {"loss": float(step)})
    writer.flush()
  writer.close()  # after the failure, nothing more is written, nor raised
  assert raised.value.exit_code == 1
  assert ONE_LINE.match(f"error: {raised.value}"), raised.value
  assert str(raised.value).startswith(f"cannot write metrics to {small_disk / 'run'} ")
  assert str(raised.value).endswith("then rerun, which starts afresh")


def test_a_summary_that_does_not_fit_leaves_no_truncated_file(small_disk):
  _fill(small_disk)
  path = small_disk / "summary.json"
  with pytest.raises(UserError) as raised:
    write_errors.write_text(str(path), "{}" * 10_000, "summary.json")
  assert ONE_LINE.match(f"error: {raised.value}"), raised.value
  assert not path.exists()


@pytest.mark.parametrize(
  "error",
  [
    OSError(errno.ENOSPC, "No space left on device"),
    # TensorStore's, for Orbax's array writes
    ValueError(
      'RESOURCE_EXHAUSTED: Error writing local file "/w/_sharding": Failed to write 5897 bytes to file 6: '
      "No space left on device [os_error_code='28']"
    ),
    # TensorFlow's, for TensorBoard's event file, wrapped by CLU's asynchronous writer
    RuntimeError(
      "Error occurred ASYNCHRONOUSLY: /w/events.out.tfevents.1.v2; No space left on device\n\tFailed to flush"
    ),
  ],
)
def test_each_library_s_full_disk_is_recognised(error):
  assert write_errors.write_errno(error) == errno.ENOSPC
  assert write_errors.failure(error, "it", "/") is not None


def test_other_errors_pass_unchanged():
  assert write_errors.failure(ValueError("shapes (3,) and (4,) differ"), "it", "/") is None
  with pytest.raises(KeyError):
    with write_errors.reported("it", "/"):
      raise KeyError("params")
