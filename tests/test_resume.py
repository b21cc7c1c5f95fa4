"""Resuming with a changed config, rerunning a finished run, and recovering from a NaN by the loss each checkpoint
records.

One 4-step run (checkpoints at 2 and 4) is the reference; each case resumes a copy of its workdir.
"""

import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from imagenet_train import checkpoint, train
from imagenet_train.errors import UserError

from conftest import REPO, final_params, tiny_config, xla_flags
from test_bad_input import assert_user_error, run_cli, train_args


@pytest.fixture(scope="module")
def finished(fashion_mnist_dir, data_dir, tmp_path_factory):
  """A finished 4-step run's workdir, and its config."""
  config = tiny_config(fashion_mnist_dir, data_dir, steps=4)
  workdir = tmp_path_factory.mktemp("finished") / "work"
  train.train_and_evaluate(config, str(workdir))
  return workdir, config


def _copy(finished, tmp_path, drop_after: int | None = None):
  """A copy of the finished run's workdir; with `drop_after`, without the checkpoints after that step (a run
  stopped there)."""
  workdir = tmp_path / "work"
  shutil.copytree(finished[0], workdir)
  for step_dir in (workdir / "checkpoints").iterdir():
    if drop_after is not None and step_dir.name.isdigit() and int(step_dir.name) > drop_after:
      shutil.rmtree(step_dir)
  return workdir


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _files(workdir):
  return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
  "field,value,saved",
  [
    ("optimizer.name", "adam", "sgd"),
    ("optimizer.weight_decay_mode", "decoupled", "l2"),
    ("schedule.name", "constant", "cosine"),
    ("averaging.ema_decay", 0.999, 0.0),
    ("model_options.activation", "tanh", "relu"),
  ],
)
def test_a_change_the_saved_state_cannot_take_is_refused_naming_the_field(finished, tmp_path, field, value, saved):
  workdir = _copy(finished, tmp_path, drop_after=2)
  config = finished[1].copy_and_resolve_references()
  parent, key = config, field
  while "." in key:
    head, key = key.split(".", 1)
    parent = parent[head]
  parent[key] = value
  before = _files(workdir)
  with pytest.raises(UserError) as refused:
    train.train_and_evaluate(config, str(workdir))
  message = str(refused.value)
  assert f"--config.{field}={value}" in message and f"the {saved} the checkpoint was trained with" in message
  assert f"Resume with --config.{field}={saved}" in message and "a new --workdir" in message
  assert _files(workdir) == before  # not even config.json is rewritten


def test_a_data_stream_change_warns_and_a_harmless_one_is_silent(finished, tmp_path, caplog):
  workdir = _copy(finished, tmp_path, drop_after=2)
  config = finished[1].copy_and_resolve_references()
  config.batch_size, config.log_every_steps = 32, 2
  with caplog.at_level(logging.WARNING):
    summary = train.train_and_evaluate(config, str(workdir))
  changes = [message for message in _warnings(caplog) if "Resuming from checkpoint step 2" in message]
  assert len(changes) == 1, changes  # batch_size warns; log_every_steps says nothing
  assert "--config.batch_size=32 differs from the 16" in changes[0] and "data stream" in changes[0]
  assert summary["steps"] == 4


def test_rerunning_a_finished_run_prints_its_results_and_writes_nothing(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  before = _files(workdir)
  saved = json.loads((workdir / train.SUMMARY).read_text())
  for steps in (4, 3):  # the same run, then one whose newest checkpoint is past a lowered num_train_steps
    config = finished[1].copy_and_resolve_references()
    config.num_train_steps = steps
    with pytest.raises(train.AlreadyFinished) as done:
      train.train_and_evaluate(config, str(workdir))
    assert done.value.summary == saved and done.value.step == 4
  result = subprocess.run(
    [sys.executable, "-m", "imagenet_train", *train_args(finished[1], workdir, "--config.num_train_steps=4")],
    cwd=REPO,
    env={**os.environ, "XLA_FLAGS": xla_flags(1)},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert "Nothing to train: the run in" in result.stdout and "finished at step 4" in result.stdout
  assert f"{saved['eval/top1_error']:.4f}" in result.stdout and "nan" not in result.stdout  # saved, not NaNs
  assert _files(workdir) == before


@pytest.mark.parametrize(
  "losses,expected",
  [
    ([(2, 2.0), (4, 1.5), (6, 1.4)], 6),  # still falling: the newest
    ([(2, 2.0), (4, 1.5), (6, 1.9), (8, 3.0)], 4),  # 1.9 > 1.25 x 1.5: the climb began after step 4
    ([(2, 2.0), (4, 1.8), (6, 2.2)], 6),  # 2.2 <= 1.25 x 1.8: noise, not a climb
    ([(2, 1.0), (4, float("nan"))], 2),
    ([(2, float("inf"))], None),  # even the first was written in the divergence
    ([(0, None), (2, 2.0), (4, 9.0)], 2),  # an imported step-0 checkpoint records no loss
  ],
)
def test_the_loss_spike_rule_names_the_newest_checkpoint_before_the_climb(losses, expected):
  assert checkpoint.before_divergence(losses) == expected


def test_a_nan_names_the_checkpoint_to_resume_from_and_resuming_there_matches_an_uninterrupted_run(
  finished, tmp_path, fashion_mnist_dir, data_dir, caplog
):
  workdir = _copy(finished, tmp_path)
  steps = {int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()}
  assert steps == {2, 4}
  meta = checkpoint.Checkpointer(str(workdir), keep=10, enable_async=False).read_meta(4)
  assert meta["train_loss"] > 0 and json.loads(meta["config"])["batch_size"] == 16

  # A learning rate that diverges at once: the run stops on the NaN, naming the newest checkpoint before it.
  config = tiny_config(fashion_mnist_dir, data_dir, steps=8)
  config.learning_rate = 1e38
  with pytest.raises(UserError) as stopped:
    train.train_and_evaluate(config, str(workdir))
  message = str(stopped.value)
  assert stopped.value.exit_code == 1 and "NaN or infinite at step" in message
  assert "The newest checkpoint, step 4 (train loss" in message

  # Resuming from step 2 sets step 4 aside and trains it again, to the reference's parameters.
  assert_user_error(*run_cli(*train_args(finished[1], workdir, "--checkpoint=3")), "no checkpoint step 3", "2, 4")
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(finished[1], str(workdir), resume_from=2)
  assert any("Resuming from step 2 as asked: moved the newer checkpoints to" in m for m in _warnings(caplog))
  assert (workdir / checkpoint.SET_ASIDE / "4").is_dir()
  (reference_step, reference), (resumed_step, resumed) = (final_params(str(w)) for w in (finished[0], workdir))
  assert reference_step == resumed_step == 4
  for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)


def test_with_no_checkpoint_the_nan_message_says_so(fashion_mnist_dir, data_dir, tmp_path):
  config = tiny_config(fashion_mnist_dir, data_dir, steps=4)
  config.learning_rate = 1e38
  with pytest.raises(UserError, match="No checkpoint was written before it: lower --config.learning_rate"):
    train.train_and_evaluate(config, str(tmp_path / "work"))
