"""A table of bad command lines: each ends in exactly one `error:` line, no traceback, the right exit status, and a
workdir exactly as it was.

The commands run in this process (a subprocess each would spend minutes importing TensorFlow and JAX 150 times):
`run_in_process` does what `python -m imagenet_train` does, with absl's flags reset between commands. Every case is
refused before training starts, so all run in the default suite.
"""

import hashlib
import logging
import pathlib
import sys

import pytest
from absl import flags

from imagenet_train import __main__ as cli

from conftest import REPO


# (case id, the arguments after the config's data flags, phrases the error line must hold). `{tmp}` in an argument
# stands for the case's own scratch folder, `{work}` for its workdir.
def field(name: str, value: str, *also: str):
  """A config field set to a bad value: refused naming the field, the value and an example."""
  return (f"{name}={value}", [f"--config.{name}={value}"], [f"--config.{name}=", " is not ", "e.g. --config.", *also])


def empty(name: str, *also: str):
  """A text field set to nothing (`--config.F=`)."""
  return (f"{name}=''", [f"--config.{name}="], [f"--config.{name}='' is not ", *also])


FIELD_CASES = [
  # Sizes and counts that must be positive.
  field("batch_size", "0", "a whole number >= 1"),
  field("batch_size", "-16"),
  field("batch_size", "abc", "a whole number"),
  field("batch_size", "1.5", "a whole number"),
  field("batch_size", "nan"),
  field("eval_batch_size", "0"),
  field("eval_batch_size", "-50"),
  field("num_epochs", "0", "a number > 0"),
  field("num_epochs", "-1"),
  field("num_epochs", "nan"),
  field("num_epochs", "inf"),
  field("num_epochs", "ten"),
  field("num_train_steps", "0", "-1 (train num_epochs)"),
  field("num_train_steps", "-5"),
  field("num_train_steps", "2.5"),
  field("log_every_steps", "0"),
  field("log_every_steps", "-1"),
  field("eval_every_epochs", "0"),
  field("eval_every_epochs", "-1"),
  field("eval_every_epochs", "nan"),
  field("checkpoint_every_steps", "0"),
  field("checkpoint_every_steps", "-100"),
  field("keep_checkpoints", "0", "a whole number >= 1"),
  field("keep_checkpoints", "-1"),
  field("profile_steps", "0"),
  field("profile_first_step", "-1"),
  field("model_parallelism", "0"),
  field("model_parallelism", "-2"),
  field("data.shuffle_buffer", "0"),
  field("data.threads", "-1"),
  field("data.host_prefetch", "0"),
  field("data.host_prefetch", "-2"),
  field("data.device_prefetch", "0"),
  field("evaluation.resize", "0"),
  field("evaluation.crop", "-1"),
  field("evaluation.multiple", "0"),
  field("evaluation.scales", "'()'", "non-empty"),
  field("evaluation.scales", "'(256, -384)'"),
  field("evaluation.googlenet_scales", "'(0,)'"),
  field("paper.ensemble_models", "-1"),
  # Rates and factors with a valid range.
  field("learning_rate", "-0.1", "a number >= 0"),
  field("learning_rate", "nan"),
  field("learning_rate", "inf"),
  field("learning_rate", "fast"),
  field("label_smoothing", "1.0", "[0, 1)"),
  field("label_smoothing", "1.5"),
  field("label_smoothing", "-0.1"),
  field("optimizer.weight_decay", "-0.0005"),
  field("optimizer.weight_decay", "nan"),
  field("optimizer.grad_clip_norm", "-1.0"),
  field("optimizer.sgd.momentum", "1.0", "[0, 1)"),
  field("optimizer.sgd.momentum", "1.5"),
  field("optimizer.sgd.momentum", "-0.9"),
  field("optimizer.sgd.momentum", "nan"),
  field("optimizer.adam.b1", "1.0"),
  field("optimizer.adam.b2", "1.0"),
  field("optimizer.adam.b2", "-0.999"),
  field("optimizer.adam.eps", "0.0", "> 0"),
  field("optimizer.adam.eps", "-1e-8"),
  field("optimizer.rmsprop.decay", "1.0"),
  field("optimizer.rmsprop.eps", "0.0"),
  field("optimizer.rmsprop.momentum", "2.0"),
  field("schedule.warmup_epochs", "-1.0"),
  field("schedule.warmup_start_fraction", "1.5", "[0, 1]"),
  field("schedule.decay_factor", "0.0", "(0, 1]"),
  field("schedule.decay_factor", "1.5"),
  field("schedule.decay_factor", "-0.1"),
  field("schedule.decay_every_epochs", "0.0"),
  field("schedule.final_fraction", "2.0"),
  field("schedule.final_fraction", "-0.5"),
  field("schedule.plateau.patience", "0"),
  field("schedule.plateau.factor", "1.0", "(0, 1)"),
  field("schedule.plateau.factor", "0.0"),
  field("schedule.plateau.threshold", "-0.01"),
  field("schedule.plateau.min_factor", "0.0"),
  field("averaging.ema_decay", "1.0"),
  field("averaging.ema_decay", "-0.5"),
  field("averaging.ema_decay", "1.01"),
  field("averaging.polyak_start_epochs", "-1.0"),
  field("paper.top1", "101.0"),
  field("paper.top5", "-3.0"),
  # Schedule boundaries that are not increasing, or not numbers.
  field("schedule.boundaries_epochs", "'(3, 1)'", "increasing"),
  field("schedule.boundaries_epochs", "'(2, 2)'"),
  field("schedule.boundaries_epochs", "'(0, 5)'"),
  field("schedule.boundaries_epochs", "'(-1, 5)'"),
  field("schedule.boundaries_epochs", "'(30, 60, 45)'"),
  # Choices.
  field("dtype", "float8", "one of 'float32', 'bfloat16' or 'float16'"),
  field("dtype", "float64"),
  field("optimizer.name", "sgdd", "'sgd'"),
  field("optimizer.name", "lamb"),
  field("optimizer.weight_decay_mode", "l1", "'decoupled'"),
  field("schedule.name", "linear", "'cosine'"),
  field("schedule.name", "Cosine"),
  field("evaluation.protocol", "twocrop", "'center'"),
  field("data.host_sharding", "random", "'split'"),
  field("paper.split", "train"),
  # Switches and texts.
  field("async_checkpoints", "maybe", "True or False"),
  field("profile", "2", "True or False"),
  field("optimizer.sgd.nesterov", "yes"),
  field("averaging.polyak", "sometimes"),
  field("data.cache_raw", "perhaps"),
  field("evaluation.flip", "1.5"),
  empty("model", "non-empty"),
  empty("data.name"),
  empty("data.eval_split"),
  empty("data.image_key"),
  empty("data.label_key"),
  empty("data.pp_eval"),
  # A data_dir that does not exist: a typo would silently prepare a fresh dataset elsewhere.
  (
    "data.data_dir=missing",
    ["--config.data.data_dir={tmp}/no_such_tfds"],
    ["--config.data.data_dir=", "a folder that exists", "prepare"],
  ),
]

PP_CASES = [
  (f"{role}:{name}", [f"--config.data.{role}={spec}"], [f"--config.data.{role}", *phrases])
  for role, cases in (
    (
      "pp_train",
      [
        ("negative_size", "decode|resize(-3)", ["resize", "size=-3", "a whole number >= 1"]),
        ("zero_size", "decode|resize(0)", ["size=0"]),
        ("size_as_text", "decode|resize('big')", ["size='big'"]),
        ("size_as_float", "decode|resize(28.5)", ["size=28.5"]),
        ("unknown_method", "decode|resize(28, method='foo')", ["method='foo'", "'bilinear'"]),
        ("method_not_text", "decode|resize(28, method=3)", ["method=3"]),
        ("antialias_not_bool", "decode|resize(28, antialias=2)", ["antialias=2", "True or False"]),
        ("negative_pad", "decode|random_crop(28, pad=-4)", ["pad=-4", ">= 0"]),
        ("crop_zero", "decode|random_crop(0)", ["size=0"]),
        ("center_crop_text", "decode|center_crop('x')", ["size='x'"]),
        ("unknown_op", "decode|resise(28)", ["resise", "resize"]),
        ("unclosed", "decode|resize(28", ["resize(28"]),
        ("not_a_literal", "decode|resize(size)", ["resize(size)"]),
        ("unknown_argument", "decode|resize(28, mode='area')", ["mode"]),
        ("too_many_arguments", "decode|resize(28, 'area', True, 4)", ["resize"]),
        ("missing_argument", "decode|resize", ["resize"]),
        ("decode_channels", "decode(2)", ["channels=2"]),
        ("jitter_negative", "decode|color_jitter(brightness=-0.4)", ["brightness=-0.4"]),
        ("lighting_negative", "decode|pca_lighting(-0.1)", ["sigma=-0.1"]),
        ("random_resize_order", "decode|random_resize_small(64, 32)|random_crop(28)", ["64", "32"]),
        ("normalize_three_channels", "decode|normalize(mean=(0.5, 0.5, 0.5), std=0.3)", ["3 per-channel", "1"]),
        ("normalize_zero_std", "decode|normalize(mean=0.3, std=0)", ["std=0"]),
        ("normalize_std_text", "decode|normalize(mean=0.3, std='one')", ["std='one'"]),
        ("normalize_empty_mean", "decode|normalize(mean=(), std=1.0)", ["mean=()"]),
        ("subtract_mean_channels", "decode|subtract_mean((120.0, 115.0, 104.0))", ["3 per-channel"]),
        ("onehot_classes", "decode|onehot(7)", ["7 classes", "onehot(10)"]),
        ("onehot_zero", "decode|onehot(0)", ["num_classes=0"]),
        ("onehot_smoothing", "decode|onehot(10, smoothing=1.0)", ["smoothing=1.0"]),
        ("crop_larger_than_image", "decode|center_crop(40)", ["fails on the first example", "40x40"]),
      ],
    ),
    (
      "pp_eval",
      [
        ("negative_size", "decode|resize(-28)", ["size=-28"]),
        ("unknown_method", "decode|resize(28, method='cubic')", ["method='cubic'"]),
        ("unknown_op", "decode|normalise(mean=0.3, std=0.3)", ["normalise"]),
        ("normalize_channels", "decode|normalize(mean=(1.0, 2.0), std=1.0)", ["2 per-channel"]),
        ("onehot_classes", "decode|onehot(1000)", ["1000 classes"]),
        ("ten_crop_zero", "decode|ten_crop(0)", ["size=0"]),
        ("grid_flips", "decode|grid_crops(24, grid=3, flips=4)", ["flips=4"]),
        ("scales_empty", "decode|vgg_multi_crop(24, scales=())", ["scales=()"]),
        ("argument_to_a_flip", "decode|flip_lr(1)", ["flip_lr"]),
        # LeNet-5's fully connected layers read the map of 28x28 images, not of 40x40 ones.
        ("size_the_model_cannot_take", "decode|resize(40)", ["cannot score", "(40, 40, 1)"]),
      ],
    ),
  )
  for name, spec, phrases in cases
]

DATASET_CASES = [
  ("train_split:empty_slice", ["--config.data.train_split=train[:0]"], ["train_split", "no examples"]),
  ("train_split:bad_slice", ["--config.data.train_split=train[:abc]"], ["train_split", "train[:abc]"]),
  ("train_split:unknown", ["--config.data.train_split=training"], ["train_split", "training", "train"]),
  ("train_split:reversed", ["--config.data.train_split=train[90%:10%]"], ["train_split", "no examples"]),
  ("eval_split:unknown", ["--config.data.eval_split=validation"], ["eval_split", "validation", "test"]),
  ("eval_split:empty_slice", ["--config.data.eval_split=test[5:5]"], ["eval_split", "no examples"]),
  ("eval_split:bad_slice", ["--config.data.eval_split=test[::2]"], ["eval_split", "test[::2]"]),
  ("image_key", ["--config.data.image_key=img"], ["image_key", "'img'", "it has image, label"]),
  ("label_key", ["--config.data.label_key=class"], ["label_key", "'class'", "it has image, label"]),
  ("dataset_name", ["--config.data.name=fashion_mnist_locall"], ["fashion_mnist_locall"]),
  ("dataset_name_quoted", ["--config.data.name='fashion_mnist'"], ["unknown tfds dataset"]),
  ("dataset_name_slashes", ["--config.data.name=imagenet_resized/64x64/extra"], ["unknown tfds dataset"]),
  ("model_name", ["--config.model=lenet6"], ["unknown model 'lenet6'"]),
  ("model_option", ["--config.model_options.activation=gelu"], ["activation", "gelu"]),
  ("model_option_pooling", ["--config.model_options.pooling=median"], ["pooling", "median"]),
  ("batch_not_divisible", ["--config.batch_size=12"], ["batch_size=12", "multiple of 8"]),
  ("eval_batch_not_divisible", ["--config.eval_batch_size=20"], ["eval_batch_size=20", "multiple of 8"]),
  ("batch_exceeds_data", ["--config.batch_size=1024"], ["batch_size=1024", "exceeds"]),
  ("model_parallel_indivisible", ["--config.model_parallelism=3"], ["model_parallelism"]),
]

COMMAND_CASES = [
  ("no_command", [], ["expected one command"]),
  ("unknown_command", ["trian"], ["trian"]),
  ("two_commands", ["train", "evaluate"], ["expected one command"]),
  (
    "unknown_flag",
    ["train", "--config=configs/default.py", "--workdir={work}", "--learning_rate=0.1"],
    ["learning_rate"],
  ),
  ("no_config", ["train", "--workdir={work}"], ["--config is required"]),
  ("no_workdir", ["train", "--config=configs/default.py"], ["--workdir is required"]),
  ("missing_config_file", ["train", "--config=configs/nosuch.py", "--workdir={work}"], ["configs/nosuch.py"]),
  (
    "config_field_misspelt",
    ["train", "--config=configs/default.py", "--workdir={work}", "--config.lerning_rate=1"],
    ["did you mean learning_rate"],
  ),
  (
    "config_subfield_misspelt",
    ["train", "--config=configs/default.py", "--workdir={work}", "--config.optimizer.sgd.momentun=0.9"],
    ["momentum"],
  ),
  ("bad_config_argument", ["train", "--config=configs/resnet.py:resnet51", "--workdir={work}"], ["configs/resnet.py"]),
  (
    "config_argument_on_default",
    ["train", "--config=configs/default.py:huge", "--workdir={work}"],
    ["configs/default.py", "huge"],
  ),
  (
    "train_checkpoint_best",
    ["train", "--config=configs/default.py", "--workdir={work}", "--checkpoint=best"],
    ["latest"],
  ),
  ("evaluate_no_workdir", ["evaluate", "--config=configs/default.py"], ["--workdir is required"]),
  (
    "evaluate_empty_workdir",
    ["evaluate", "--config=configs/default.py", "--workdir={work}"],
    ["no checkpoint in", "train there first"],
  ),
  ("evaluate_bad_step", ["evaluate", "--config=configs/default.py", "--workdir={work}", "--checkpoint=last"], ["last"]),
  (
    "evaluate_unknown_protocol",
    ["evaluate", "--config=configs/default.py", "--workdir={work}", "--protocol=twocrop"],
    ["twocrop"],
  ),
  ("import_no_source", ["import-weights", "--config=configs/default.py", "--out={work}"], ["--from"]),
  (
    "import_missing_file",
    ["import-weights", "--config=configs/default.py", "--out={work}", "--model=lenet5", "--from={tmp}/none.pth"],
    ["none.pth"],
  ),
  (
    "import_not_weights",
    ["import-weights", "--config=configs/default.py", "--out={work}", "--model=lenet5", "--from={tmp}/notes.txt"],
    ["notes.txt"],
  ),
  ("sweep_no_file", ["sweep", "--config=configs/default.py", "--workdir={work}"], ["--sweep"]),
  (
    "sweep_missing_file",
    ["sweep", "--config=configs/default.py", "--workdir={work}", "--sweep=sweeps/nosuch.py"],
    ["nosuch.py"],
  ),
  (
    "sweep_bad_value",
    ["sweep", "--config=configs/default.py", "--workdir={work}", "--sweep={tmp}/bad_sweep.py", "--dry_run"],
    ["sweep run 1", "learning_rate=-0.1"],
  ),
  (
    "sweep_unknown_launcher",
    ["sweep", "--config=configs/default.py", "--workdir={work}", "--sweep=sweeps/lr_batch.py", "--launcher=pbs"],
    ["launcher"],
  ),
  ("report_no_runs", ["report"], ["--runs"]),
  ("report_missing_runs", ["report", "--runs={tmp}/no_runs_here"], ["no_runs_here"]),
  ("prepare_no_dataset", ["prepare"], ["--dataset"]),
  ("prepare_fake_not_imagenet", ["prepare", "--dataset=fashion_mnist_local", "--fake"], ["--fake"]),
  ("models_unknown_filter", ["models", "--model=lenet6"], ["lenet6"]),
]

# Config files that fail to load: (case id, the file's text, phrases).
CONFIG_FILE_CASES = [
  ("syntax_error", "def get_config(:\n  pass\n", ["broken.py", "line 1"]),
  ("raises", "def get_config(arg=None):\n  raise ValueError('no such recipe')\n", ["broken.py", "no such recipe"]),
  ("failed_import", "import no_such_module\n\ndef get_config(arg=None):\n  return None\n", ["no_such_module"]),
  ("no_get_config", "CONFIG = 1\n", ["get_config"]),
  ("empty", "", ["get_config"]),
  ("returns_none", "def get_config(arg=None):\n  pass\n", ["returned None"]),
  ("returns_dict", "def get_config(arg=None):\n  return {'model': 'lenet5'}\n", ["returned a dict"]),
  (
    "no_field",
    "import ml_collections\n\ndef get_config(arg=None):\n  return ml_collections.ConfigDict({'model': 'lenet5'})\n",
    ["base_config()"],
  ),
]


def _cases():
  cases = [pytest.param(args, phrases, 2, id=f"field:{name}") for name, args, phrases in FIELD_CASES]
  cases += [pytest.param(args, phrases, 2, id=f"pp:{name}") for name, args, phrases in PP_CASES]
  cases += [pytest.param(args, phrases, 2, id=f"data:{name}") for name, args, phrases in DATASET_CASES]
  return cases


def _snapshot(folder: pathlib.Path) -> dict:
  """Every file under `folder` by path, with its size, mtime and contents' hash."""
  if not folder.exists():
    return {}
  return {
    str(path.relative_to(folder)): (
      path.stat().st_size,
      path.stat().st_mtime_ns,
      hashlib.sha256(path.read_bytes()).hexdigest(),
    )
    if path.is_file()
    else "folder"
    for path in sorted(folder.rglob("*"))
  }


def run_in_process(argv: list[str], capfd) -> tuple[int, str]:
  """`python -m imagenet_train ARGV` in this process: its exit status and stderr."""
  # Parsing (and unparsing) the flags sets absl's logger to their --verbosity, WARNING, which would hide INFO lines
  # from the tests that run after this one in the same process.
  absl_level = logging.getLogger("absl").level
  for name in [name for name in flags.FLAGS if name.startswith("config.")]:
    delattr(flags.FLAGS, name)  # config_flags defines a flag per field of the config file it loads
  flags.FLAGS.unparse_flags()
  sys.modules.pop("config_config", None)  # config_flags loads every config file as this module, and reuses it
  argv = ["imagenet_train", *argv]
  old_argv, sys.argv = sys.argv, argv  # config_flags reads the overrides from sys.argv
  capfd.readouterr()
  try:
    rest = cli._parse_flags(argv)
    cli.main(rest)
    code = 0
  except SystemExit as exit:
    code = exit.code
  finally:
    sys.argv = old_argv
    flags.FLAGS.unparse_flags()
    logging.getLogger("absl").setLevel(absl_level)
  return code, capfd.readouterr().err


def assert_refused(code, stderr, phrases, exit_code):
  assert "Traceback" not in stderr, stderr[-3000:]
  errors = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, stderr[-3000:]
  assert code == exit_code, stderr[-3000:]
  for phrase in phrases:
    assert phrase in errors[0], errors[0]


@pytest.fixture
def workdir(tmp_path):
  """A workdir holding a file of the user's, which no refused command may change."""
  work = tmp_path / "work"
  work.mkdir()
  (work / "notes.txt").write_text("the user's own file\n")
  return work


@pytest.fixture
def data_flags(config):
  return [f"--config.data.manual_dir={config.data.manual_dir}", f"--config.data.data_dir={config.data.data_dir}"]


def _expand(args, tmp_path, workdir):
  return [arg.replace("{tmp}", str(tmp_path)).replace("{work}", str(workdir)) for arg in args]


@pytest.mark.parametrize("args,phrases,exit_code", _cases())
def test_a_bad_config_value_is_refused_before_the_workdir_is_touched(
  args, phrases, exit_code, data_flags, workdir, tmp_path, capfd
):
  before = _snapshot(workdir)
  argv = ["train", "--config=configs/default.py", f"--workdir={workdir}", *data_flags, "--config.num_train_steps=2"]
  argv += _expand(args, tmp_path, workdir)
  phrases = [phrase.replace("{tmp}", str(tmp_path)) for phrase in phrases]
  assert_refused(*run_in_process(argv, capfd), phrases, exit_code)
  assert _snapshot(workdir) == before


@pytest.mark.parametrize("args,phrases", [pytest.param(a, p, id=f"command:{n}") for n, a, p in COMMAND_CASES])
def test_a_bad_command_line_is_refused_in_one_line(args, phrases, data_flags, workdir, tmp_path, capfd, monkeypatch):
  monkeypatch.chdir(REPO)
  (tmp_path / "notes.txt").write_text("not a state_dict\n")
  (tmp_path / "bad_sweep.py").write_text(
    "def get_sweep():\n  return [{'learning_rate': 0.1}, {'learning_rate': -0.1}]\n"
  )
  before = _snapshot(workdir)
  argv = _expand(args, tmp_path, workdir)
  if any(arg.startswith("--config=") for arg in argv):
    argv += data_flags
  assert_refused(*run_in_process(argv, capfd), phrases, 2)
  assert _snapshot(workdir) == before


@pytest.mark.parametrize("text,phrases", [pytest.param(t, p, id=f"config_file:{n}") for n, t, p in CONFIG_FILE_CASES])
def test_a_config_file_that_fails_to_load_is_named_in_one_line(text, phrases, workdir, tmp_path, capfd):
  path = tmp_path / "broken.py"
  path.write_text(text)
  before = _snapshot(workdir)
  assert_refused(*run_in_process(["train", f"--config={path}", f"--workdir={workdir}"], capfd), phrases, 2)
  assert _snapshot(workdir) == before


def test_a_workdir_through_a_file_is_refused(data_flags, tmp_path, capfd):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  argv = ["train", "--config=configs/default.py", f"--workdir={blocker}/work", *data_flags]
  assert_refused(*run_in_process(argv, capfd), [str(blocker)], 2)
  assert blocker.read_text() == "x"
