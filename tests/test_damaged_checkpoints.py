"""Damaged checkpoints: train resumes from the newest readable step and keeps the damaged one; evaluate names it.

Every case damages a real checkpoint: one uninterrupted run of 6 steps (checkpoints at 2, 4, 6) is the reference,
and a copy of its workdir without step 6 is a run killed after its step-4 save. Resumed over a damaged step 4, the
run must fall back to step 2 and still end on the reference's parameters, bit for bit.
"""

import hashlib
import json
import logging
import os
import pathlib
import shutil

import jax
import numpy as np
import pytest

from imagenet_train import checkpoint, evaluate, protocols, train
from imagenet_train.errors import UserError

from conftest import final_params, tiny_config
from test_bad_input import assert_user_error, run_cli, train_args


def _biggest_array_file(step_dir: pathlib.Path) -> pathlib.Path:
  return max((path for path in (step_dir / "state").rglob("*") if path.is_file()), key=lambda path: path.stat().st_size)


def _truncate(step_dir):
  path = _biggest_array_file(step_dir)
  os.truncate(path, path.stat().st_size // 2)


def _zero(step_dir):
  path = _biggest_array_file(step_dir)
  path.write_bytes(bytes(path.stat().st_size))


def _empty(step_dir):
  shutil.rmtree(step_dir)
  step_dir.mkdir()


def _half_written(step_dir):
  """What a kill during the step-4 save leaves: Orbax's temporary folder, uncommitted, an array file cut short."""
  for marker in step_dir.rglob("commit_success.txt"):
    marker.unlink()
  _truncate(step_dir)
  step_dir.rename(step_dir.with_name(step_dir.name + ".orbax-checkpoint-tmp"))


# Each damage to step 4: (what it does to the step's folder, the folder's name then, what the warning says is wrong).
DAMAGES = {
  "truncated_array_file": (_truncate, "4", "its arrays cannot be read: OUT_OF_RANGE"),
  "zeroed_array_file": (_zero, "4", "its arrays cannot be read: "),
  "missing_meta": (lambda step_dir: shutil.rmtree(step_dir / "meta"), "4", "its meta item, meta/, is missing"),
  "meta_not_json": (lambda step_dir: (step_dir / "meta" / "metadata").write_text('{"model": '), "4", "its meta item"),
  "missing_state_metadata": (
    lambda step_dir: (step_dir / "state" / "_METADATA").unlink(),
    "4",
    "its state metadata, state/_METADATA, is missing",
  ),
  "empty_folder": (_empty, "4", "its folder is empty"),
  "half_written": (_half_written, "4.orbax-checkpoint-tmp", "it never finished"),
}


def _config(fashion_mnist_dir, data_dir):
  config = tiny_config(fashion_mnist_dir, data_dir, steps=6)
  config.keep_checkpoints = 3
  return config


def _contents(root: pathlib.Path) -> dict[str, str]:
  """Every file under `root` by relative path, with a hash of its bytes."""
  return {
    str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
    for path in sorted(root.rglob("*"))
    if path.is_file()
  }


@pytest.fixture(scope="module")
def reference(fashion_mnist_dir, data_dir, tmp_path_factory):
  """The workdir of an uninterrupted 6-step run, and its final parameters."""
  workdir = tmp_path_factory.mktemp("uninterrupted")
  train.train_and_evaluate(_config(fashion_mnist_dir, data_dir), str(workdir))
  return workdir, final_params(workdir, 6)[1]


def _killed_after_step_4(reference, tmp_path) -> pathlib.Path:
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  shutil.rmtree(workdir / "checkpoints" / "6")
  return workdir


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_train_resumes_from_the_newest_readable_step_and_keeps_the_damaged_one(
  damage, reference, fashion_mnist_dir, data_dir, tmp_path, caplog
):
  make, name, reason = DAMAGES[damage]
  workdir = _killed_after_step_4(reference, tmp_path)
  make(workdir / "checkpoints" / "4")
  damaged = _contents(workdir / "checkpoints" / name)
  older = _contents(workdir / "checkpoints" / "2")
  config = _config(fashion_mnist_dir, data_dir)

  if name == "4":  # evaluate reads the damaged step, names what is wrong and the readable steps, and moves nothing
    before = _contents(workdir)
    with pytest.raises(UserError, match="pass --checkpoint=STEP for one of the readable steps: 2$") as refused:
      evaluate.evaluate_checkpoint(config, str(workdir), "4", protocols.CENTER)
    assert f"checkpoint step 4 in {workdir / 'checkpoints'} is damaged ({reason}" in str(refused.value)
    assert _contents(workdir) == before

  with caplog.at_level(logging.INFO):
    summary = train.train_and_evaluate(config, str(workdir))
  messages = [record.getMessage() for record in caplog.records]
  warnings = [message for message in messages if " is damaged (" in message]
  moved_to = workdir / "damaged_checkpoints" / name
  what = f"checkpoint step {name}" if name == "4" else f"the save {name}"
  assert len(warnings) == 1, warnings
  assert warnings[0].startswith(f"{what} in {workdir / 'checkpoints'} is damaged ({reason}")
  assert warnings[0].endswith(f"): moved it to {moved_to}; resuming from step 2")
  assert any(message.endswith("starting at step 2") for message in messages)  # the loop's first line
  assert summary["steps"] == 6
  assert _contents(moved_to) == damaged  # moved whole, not deleted
  assert _contents(workdir / "checkpoints" / "2") == older
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4", "6"]
  for want, got in zip(jax.tree.leaves(reference[1]), jax.tree.leaves(final_params(workdir, 6)[1]), strict=True):
    np.testing.assert_array_equal(want, got)


def test_a_first_save_that_never_finished_is_kept_and_the_run_starts_afresh(
  reference, fashion_mnist_dir, data_dir, tmp_path, caplog
):
  workdir = _killed_after_step_4(reference, tmp_path)
  shutil.rmtree(workdir / "checkpoints" / "4")
  _half_written(workdir / "checkpoints" / "2")
  damaged = _contents(workdir / "checkpoints" / "2.orbax-checkpoint-tmp")
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(_config(fashion_mnist_dir, data_dir), str(workdir))
  moved_to = workdir / "damaged_checkpoints" / "2.orbax-checkpoint-tmp"
  assert [record.getMessage() for record in caplog.records if " is damaged (" in record.getMessage()] == [
    f"the save 2.orbax-checkpoint-tmp in {workdir / 'checkpoints'} is damaged (it never finished): "
    f"moved it to {moved_to}; starting afresh"
  ]
  assert _contents(moved_to) == damaged
  for want, got in zip(jax.tree.leaves(reference[1]), jax.tree.leaves(final_params(workdir, 6)[1]), strict=True):
    np.testing.assert_array_equal(want, got)


def test_a_workdir_without_a_readable_checkpoint_is_refused_and_left_as_it_is(
  reference, fashion_mnist_dir, data_dir, tmp_path
):
  workdir = _killed_after_step_4(reference, tmp_path)
  _truncate(workdir / "checkpoints" / "4")
  shutil.rmtree(workdir / "checkpoints" / "2" / "meta")
  before = _contents(workdir / "checkpoints")
  with pytest.raises(UserError) as refused:
    train.train_and_evaluate(_config(fashion_mnist_dir, data_dir), str(workdir))
  message = str(refused.value)
  assert message.startswith(
    f"no checkpoint in {workdir / 'checkpoints'} can be read (step 4: its arrays cannot be read"
  )
  assert "; step 2: its meta item, meta/, is missing); left as they are: restore them from a backup" in message
  assert message.endswith("or pass a new --workdir to start afresh") and "\n" not in message
  assert _contents(workdir / "checkpoints") == before  # nothing moved, nothing trained over them
  assert not (workdir / "damaged_checkpoints").exists()


def test_evaluate_cli_names_a_damaged_step_in_one_line(reference, config, tmp_path):
  """The whole command: one error line, none of the tracebacks TensorStore's unfinished reads would print."""
  workdir = _killed_after_step_4(reference, tmp_path)
  _zero(workdir / "checkpoints" / "4")
  before = _contents(workdir)
  assert_user_error(
    *run_cli("evaluate", *train_args(config, workdir)[1:], "--checkpoint=4"),
    "checkpoint step 4 in ",
    "is damaged (its arrays cannot be read: ",
    "pass --checkpoint=STEP for one of the readable steps: 2",
  )
  assert _contents(workdir) == before


def test_another_state_layout_is_refused_not_taken_for_damage(reference, fashion_mnist_dir, data_dir, tmp_path):
  workdir = _killed_after_step_4(reference, tmp_path)
  before = _contents(workdir / "checkpoints")
  config = _config(fashion_mnist_dir, data_dir)
  config.averaging.ema_decay = 0.9  # the state gains averages the checkpoints lack
  with pytest.raises(UserError, match="cannot resume from checkpoint step 4 .* --config.averaging.ema_decay=0.9"):
    train.train_and_evaluate(config, str(workdir))
  assert _contents(workdir / "checkpoints") == before
  # A checkpoint of an earlier version records no config to compare: the restore itself tells the layouts apart.
  for step in ("2", "4"):
    meta_file = workdir / "checkpoints" / step / "meta" / "metadata"
    meta_file.write_text(json.dumps({k: v for k, v in json.loads(meta_file.read_text()).items() if k != "config"}))
  before = _contents(workdir / "checkpoints")
  with pytest.raises(UserError) as refused:
    train.train_and_evaluate(config, str(workdir))
  message = str(refused.value)
  assert message.startswith(
    f"checkpoint step 4 in {workdir / 'checkpoints'} holds a state of another layout than the config's "
    "(the config adds averages/ema/params/"
  )
  assert message.endswith(
    f"resume with the config that wrote it (saved in {workdir / 'checkpoints' / '4' / 'meta' / 'metadata'}), "
    "or use a new --workdir"
  )
  assert _contents(workdir / "checkpoints") == before
  assert not (workdir / "damaged_checkpoints").exists()


def test_unreadable_metrics_name_the_step_to_move(reference, tmp_path):
  """Orbax reads every step's metrics (the evaluation's top-1 at step 6) before anything else, and stops there."""
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  (workdir / "checkpoints" / "6" / "metrics" / "metrics").write_text('{"eval/top1')
  with pytest.raises(UserError) as refused:
    checkpoint.Checkpointer(str(workdir), keep=3, enable_async=False)
  assert str(refused.value).startswith(
    f"checkpoint step 6 in {workdir / 'checkpoints'} is damaged (its metrics file is not valid JSON: "
  )
  assert str(refused.value).endswith(
    f"move {workdir / 'checkpoints' / '6'} to {workdir / 'damaged_checkpoints' / '6'} and rerun"
  )
  assert (workdir / "checkpoints" / "6" / "metrics" / "metrics").read_text() == '{"eval/top1'
