"""Several processes on JAX's multi-controller runtime: 2 processes x 4 CPU devices on localhost.

The processes are real (`python -m imagenet_train` subprocesses joined by jax.distributed over
127.0.0.1), as users run them with launch/multiprocess.sh.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from imagenet_train import checkpoint
from imagenet_train import state as state_lib

from conftest import REPO, xla_flags
from test_bad_input import assert_user_error, run_cli


def final_params(workdir, config):
  """The newest checkpoint's parameters, restored onto this process's 8 devices."""
  setup = state_lib.prepare(config)
  ckpt = checkpoint.Checkpointer(str(workdir), keep=10, enable_async=False)
  try:
    step = ckpt.latest_step()
    return step, jax.device_get(ckpt.restore(step, setup.abstract_state).params)
  finally:
    ckpt.close()


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def smoke_args(config, workdir, steps=3):
  return [
    "train",
    "--config=configs/default.py",
    f"--workdir={workdir}",
    f"--config.data.manual_dir={config.data.manual_dir}",
    f"--config.data.data_dir={config.data.data_dir}",
    "--config.data.host_sharding=global",
    "--config.batch_size=16",
    "--config.eval_batch_size=48",
    f"--config.num_train_steps={steps}",
    "--config.async_checkpoints=False",
  ]


def start(args, devices, process_id=None, port=None, processes=2):
  env = {**os.environ, "XLA_FLAGS": xla_flags(devices), "JAX_PLATFORMS": "cpu"}
  if process_id is not None:
    args = [
      *args,
      f"--coordinator_address=127.0.0.1:{port}",
      f"--num_processes={processes}",
      f"--process_id={process_id}",
      "--heartbeat_timeout=10",
    ]
  return subprocess.Popen(
    [sys.executable, "-m", "imagenet_train", *args],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def test_two_processes_of_four_devices_train_like_one_of_eight(config, tmp_path):
  """To fp32 tolerance, not bit for bit: each device gets the same examples in both layouts
  (host_sharding=global), but the gradient all-reduce runs through gloo between processes and
  inside XLA within one, which may add the eight partial sums in a different order."""
  one = start(smoke_args(config, tmp_path / "one"), devices=8)
  port = free_port()
  two = [start(smoke_args(config, tmp_path / "two"), devices=4, process_id=i, port=port) for i in range(2)]
  for process in (one, *two):
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
  assert "[process 1/2]" in stderr  # log lines carry the process index
  step_one, params_one = final_params(tmp_path / "one", config)
  step_two, params_two = final_params(tmp_path / "two", config)
  assert step_one == step_two == 3
  for a, b in zip(jax.tree.leaves(params_one), jax.tree.leaves(params_two), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Process 0 alone writes the summary; both runs evaluate every test example once.
  summaries = [json.loads((tmp_path / run / "summary.json").read_text()) for run in ("one", "two")]
  np.testing.assert_allclose(summaries[0]["eval/log_loss"], summaries[1]["eval/log_loss"], rtol=1e-5)


def test_when_one_process_dies_the_other_stops_within_a_minute(config, tmp_path):
  port = free_port()
  processes = [
    start(smoke_args(config, tmp_path / "w", steps=100_000), devices=4, process_id=i, port=port) for i in range(2)
  ]
  checkpoints = tmp_path / "w" / "checkpoints"
  deadline = time.monotonic() + 300
  while not checkpoints.exists() or not any(checkpoints.iterdir()):  # both are training once step 0 is saved
    assert time.monotonic() < deadline and processes[0].poll() is None, processes[0].communicate()[1][-3000:]
    time.sleep(1)
  time.sleep(3)
  processes[1].send_signal(signal.SIGKILL)
  killed = time.monotonic()
  _, stderr = processes[0].communicate(timeout=120)
  assert time.monotonic() - killed < 60
  assert processes[0].returncode != 0
  assert "another task died" in stderr, stderr[-1500:]


def test_unreachable_coordinator_fails_in_bounded_time_naming_it(config, tmp_path):
  address = f"127.0.0.1:{free_port()}"  # nobody listens there
  started = time.monotonic()
  assert_user_error(
    *run_cli(
      *smoke_args(config, tmp_path / "w"),
      f"--coordinator_address={address}",
      "--num_processes=2",
      "--process_id=1",
      "--coordinator_timeout=5",
      timeout=120,
    ),
    f"cannot reach the coordinator at {address} within 5 s",
  )
  assert time.monotonic() - started < 90


def write_sweep(path, body):
  path.write_text("from imagenet_train.sweep import axis, product, zipped\n\n\ndef get_sweep():\n  return " + body)
  return str(path)


def test_two_by_two_sweep_runs_four_distinct_runs_and_reports_them(config, tmp_path):
  sweep_file = write_sweep(
    tmp_path / "grid.py", 'product(axis("learning_rate", [0.05, 0.1]), axis("optimizer.sgd.momentum", [0.8, 0.9]))\n'
  )
  args = [
    "sweep",
    "--config=configs/default.py",
    f"--sweep={sweep_file}",
    f"--workdir={tmp_path / 'sweeps'}",
    f"--config.data.manual_dir={config.data.manual_dir}",
    f"--config.data.data_dir={config.data.data_dir}",
    "--config.batch_size=16",
    "--config.eval_batch_size=50",
    "--config.num_train_steps=2",
    "--config.async_checkpoints=False",
  ]
  result = subprocess.run(
    [sys.executable, "-m", "imagenet_train", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=900,
    env={**os.environ, "XLA_FLAGS": xla_flags(1)},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  runs = sorted((tmp_path / "sweeps" / "grid").iterdir())
  assert len(runs) == 4
  overrides = [json.loads((run / "sweep.json").read_text())["overrides"] for run in runs]
  assert len({json.dumps(o, sort_keys=True) for o in overrides}) == 4
  assert all((run / "summary.json").exists() for run in runs)
  table_rows = [line for line in result.stdout.splitlines() if line.startswith("|")]
  assert len(table_rows) == 2 + 4  # header, rule, one row per run

  dry = run_cli(*args, "--dry_run", "--launcher=slurm")
  assert dry[0] == 0, dry[2][-2000:]


def test_sweep_dry_run_prints_one_launcher_command_per_run(config, tmp_path):
  sweep_file = write_sweep(
    tmp_path / "lr.py", 'zipped(axis("learning_rate", [0.05, 0.1]), axis("batch_size", [128, 256]))\n'
  )
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "imagenet_train",
      "sweep",
      "--config=configs/default.py",
      f"--sweep={sweep_file}",
      f"--workdir={tmp_path}",
      "--dry_run",
      "--launcher=slurm",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 2
  assert all(line.startswith("sbatch launch/slurm.sbatch -- train --config=configs/default.py") for line in lines)
  assert "--config.learning_rate=0.05" in lines[0] and "--config.batch_size=256" in lines[1]
  assert not any(tmp_path.joinpath("lr").glob("*/checkpoints"))  # nothing ran


def test_sweep_of_a_field_the_config_lacks_is_refused_before_any_run(tmp_path):
  sweep_file = write_sweep(tmp_path / "bad.py", 'product(axis("optimizer.momentun", [0.8, 0.9]))\n')
  assert_user_error(
    *run_cli("sweep", "--config=configs/default.py", f"--sweep={sweep_file}", f"--workdir={tmp_path / 'w'}"),
    "optimizer.momentun",
  )
  assert not (tmp_path / "w").exists()
