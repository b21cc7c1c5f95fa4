"""Each user mistake ends in one line naming the problem and the fix, and loses nothing."""

import os
import subprocess
import sys

import pytest

from imagenet_train import checkpoint, train

from conftest import REPO, xla_flags


def run_cli(*args, devices: int = 1, timeout: int = 300):
  env = {**os.environ, "XLA_FLAGS": xla_flags(devices)}
  result = subprocess.run(
    [sys.executable, "-m", "imagenet_train", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
  )
  lines = result.stderr.strip().splitlines()
  return result.returncode, lines[-1] if lines else "", result.stderr


def train_args(config, workdir, *overrides):
  return (
    "train",
    "--config=configs/default.py",
    f"--workdir={workdir}",
    f"--config.data.manual_dir={config.data.manual_dir}",
    f"--config.data.data_dir={config.data.data_dir}",
    "--config.batch_size=16",
    "--config.eval_batch_size=50",
    "--config.num_train_steps=2",
    *overrides,
  )


def assert_user_error(returncode, last_line, stderr, *phrases, exit_code=2):
  assert returncode == exit_code, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  assert last_line.startswith("error: "), last_line
  for phrase in phrases:
    assert phrase in last_line, last_line


def test_unknown_model_names_the_closest(config, tmp_path):
  assert_user_error(
    *run_cli(*train_args(config, tmp_path, "--config.model=resnet19")), "unknown model 'resnet19'", "resnet18"
  )


def test_unknown_config_field(config, tmp_path):
  # A plain sentence: no quotes escaped, no literal \n, the near name suggested.
  assert_user_error(
    *run_cli(*train_args(config, tmp_path, "--config.learning_rat=0.1")),
    "the config has no field learning_rat (--config.learning_rat): did you mean learning_rate?",
  )
  assert_user_error(
    *run_cli(*train_args(config, tmp_path, "--config.data.pp_tran=decode")),
    "no field data.pp_tran (--config.data.pp_tran): did you mean pp_train?",
  )


# Config files that fail to load: (file text, what the one line must say beside the file's path).
BAD_CONFIG_FILES = {
  "syntax_error": ("def get_config(:\n  pass\n", ["line 1: invalid syntax"]),
  "raises": ("def get_config():\n  raise RuntimeError('boom')\n", ["line 2: RuntimeError: boom"]),
  "failed_import": ("import no_such_module_anywhere\n", ["line 1: ModuleNotFoundError", "no_such_module_anywhere"]),
  "returns_a_dict": ("def get_config():\n  return {'model': 'lenet5'}\n", ["returned a dict, not an"]),
  "returns_nothing": ("def get_config():\n  pass\n", ["returned None: end it with `return config`"]),
  "empty": ("", ["defines no get_config()"]),
  "without_get_config": ("X = 1\n", ["defines no get_config()"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG_FILES))
def test_a_config_file_that_fails_to_load_is_one_line_naming_it(case, tmp_path):
  text, phrases = BAD_CONFIG_FILES[case]
  path = tmp_path / f"{case}.py"
  path.write_text(text)
  workdir = tmp_path / "workdir"
  assert_user_error(*run_cli("train", f"--config={path}", f"--workdir={workdir}"), str(path), *phrases)
  assert not workdir.exists()


def test_a_bad_config_argument_names_the_file_and_the_choices(tmp_path):
  assert_user_error(
    *run_cli("train", "--config=configs/resnet.py:51", f"--workdir={tmp_path / 'w'}"),
    "cannot load config file configs/resnet.py, line ",
    "config argument depth=51 is not one of 18, 34, 50, 101, 152",
  )
  assert not (tmp_path / "w").exists()


def test_missing_config_file(tmp_path):
  assert_user_error(*run_cli("train", "--config=configs/no_such.py", f"--workdir={tmp_path}"), "configs/no_such.py")


def test_batch_not_divisible_by_devices(config, tmp_path):
  assert_user_error(
    *run_cli(*train_args(config, tmp_path, "--config.batch_size=12"), devices=8),
    "batch_size=12",
    "8 data-parallel devices",
    "multiple of 8",
  )


def test_missing_dataset_files_say_how_to_install(config, tmp_path):
  (tmp_path / "empty_tfds").mkdir()  # a data_dir that does not exist is refused before the dataset is looked for
  args = train_args(
    config,
    tmp_path / "work",
    f"--config.data.manual_dir={tmp_path / 'nothing'}",
    f"--config.data.data_dir={tmp_path / 'empty_tfds'}",
  )
  assert_user_error(*run_cli(*args), "apt-get install dataset-fashion-mnist", "manual_dir")


def test_unwritable_workdir(config, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  assert_user_error(*run_cli(*train_args(config, blocker / "run")), "cannot write to workdir", "--workdir")


def test_workdir_of_another_model_is_refused_and_kept(config, tmp_path):
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(tmp_path))
  before = sorted(os.listdir(tmp_path / "checkpoints")), sorted(os.listdir(tmp_path))
  args = [
    "--config=configs/resnet18_fashion_mnist.py" if arg.startswith("--config=") else arg
    for arg in train_args(config, tmp_path, "--config.model_options.width=4")
  ]
  returncode, last_line, stderr = run_cli(*args)
  assert_user_error(returncode, last_line, stderr, "holds a checkpoint of lenet5", "resnet18", "--workdir")
  assert (sorted(os.listdir(tmp_path / "checkpoints")), sorted(os.listdir(tmp_path))) == before


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(config, tmp_path):
  returncode, last_line, stderr = run_cli(
    *train_args(
      config,
      tmp_path,
      "--config.learning_rate=1e30",
      "--config.num_train_steps=20",
      "--config.checkpoint_every_steps=1",
      "--config.log_every_steps=1000",
    )
  )
  assert_user_error(
    returncode,
    last_line,
    stderr,
    "NaN or infinite at step",
    "The newest checkpoint, step",
    "precedes the divergence",
    "--config.learning_rate",
    exit_code=1,
  )
  bad_step = int(last_line.split("at step ")[1].split(";")[0])
  good_step = int(last_line.split("newest checkpoint, step ")[1].split()[0])
  assert good_step == bad_step - 1
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=3)
  assert ckpt.latest_step() == good_step
  ckpt.close()


def test_evaluate_without_checkpoint(config, tmp_path):
  assert_user_error(*run_cli("evaluate", *train_args(config, tmp_path)[1:]), "no checkpoint in", "train there first")
