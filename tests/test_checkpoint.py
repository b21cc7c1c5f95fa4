"""Checkpoints: exact resume after an interruption, preemption, newest-N plus best."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from imagenet_train import checkpoint, results, train
from imagenet_train.data import pipeline

from conftest import REPO, final_params, xla_flags


class _Crash(Exception):
  pass


def test_interrupted_run_resumes_to_the_same_parameters(config, tmp_path, monkeypatch):
  config.num_train_steps = 7
  config.checkpoint_every_steps = 3
  train.train_and_evaluate(config, str(tmp_path / "whole"))

  # Same config, but the input stream dies when batch 6 is read (two batches ahead of the step
  # that needs it, for the device prefetch): after the checkpoint at step 3, before the one at 6.
  real = pipeline.train_batches

  def dies_at_batch_six(*args, **kwargs):
    for index, batch in enumerate(real(*args, **kwargs)):
      if kwargs["start_step"] + index == 6:
        raise _Crash()
      yield batch

  monkeypatch.setattr(pipeline, "train_batches", dies_at_batch_six)
  with pytest.raises(_Crash):
    train.train_and_evaluate(config, str(tmp_path / "interrupted"))
  monkeypatch.setattr(pipeline, "train_batches", real)
  assert checkpoint.Checkpointer(str(tmp_path / "interrupted"), keep=10).latest_step() == 3

  summary = train.train_and_evaluate(config, str(tmp_path / "interrupted"))
  assert summary["steps"] == 7
  whole_step, whole = final_params(str(tmp_path / "whole"))
  resumed_step, resumed = final_params(str(tmp_path / "interrupted"))
  assert whole_step == resumed_step == 7
  for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)


def test_keeps_newest_checkpoints_and_the_best(config, tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, enable_async=False)
  state = {"w": np.arange(3.0)}
  for step, top1 in ((1, 0.5), (2, 0.9), (3, 0.6), (4, 0.7), (5, None)):
    ckpt.save(step, state, {"model": "m"}, metrics=None if top1 is None else {results.BEST_CHECKPOINT_METRIC: top1})
  ckpt.wait()
  assert sorted(ckpt.manager.all_steps()) == [2, 4, 5]
  assert ckpt.best_step() == 2
  ckpt.close()


def test_sigterm_saves_a_checkpoint_then_exits(config, tmp_path):
  workdir = tmp_path / "preempted"
  args = [
    sys.executable,
    "-m",
    "imagenet_train",
    "train",
    "--config=configs/default.py",
    f"--workdir={workdir}",
    f"--config.data.manual_dir={config.data.manual_dir}",
    f"--config.data.data_dir={config.data.data_dir}",
    "--config.batch_size=16",
    "--config.num_train_steps=100000",
    "--config.checkpoint_every_steps=100000",
    "--config.log_every_steps=5",
  ]
  env = {**os.environ, "XLA_FLAGS": xla_flags()}
  process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while time.time() < deadline and not list(workdir.glob("events.out.tfevents.*")):
    time.sleep(0.5)
  time.sleep(3)  # well into training
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 143, stderr[-2000:]
  assert "Traceback" not in stderr
  last_line = stderr.strip().splitlines()[-1]
  assert last_line.startswith("error: received SIGTERM: saved a checkpoint at step")
  saved_step = int(last_line.split("at step ")[1].split()[0])
  assert saved_step > 0
  assert checkpoint.Checkpointer(str(workdir), keep=3).latest_step() == saved_step
