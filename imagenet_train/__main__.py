"""The command line: prepare, train, evaluate, models, import-weights, sweep, report.

    python -m imagenet_train prepare --dataset=imagenet2012 --manual_dir=DIR [--data_dir=DIR]
    python -m imagenet_train sweep --config=configs/default.py --sweep=sweeps/lr_batch.py --workdir=workdirs/sweeps
    python -m imagenet_train report --runs=workdirs/sweeps/lr_batch
    python -m imagenet_train train --config=configs/default.py --workdir=workdirs/default
    python -m imagenet_train evaluate --config=configs/default.py --workdir=workdirs/default
    python -m imagenet_train evaluate --config=configs/vgg.py:d --workdir=workdirs/vgg_d --protocol=dense
    python -m imagenet_train evaluate --config=configs/vgg.py:d --workdir=workdirs/vgg_de --protocol=ensemble \
        --ensemble=workdirs/vgg_d,workdirs/vgg_e --ensemble_protocol=multicrop
    python -m imagenet_train report --runs=workdirs/vgg_d,workdirs/vgg_de --out=workdirs/report
    python -m imagenet_train models [--model=resnet50,vgg_d]
    python -m imagenet_train import-weights --config=configs/x.py --model=resnet50 \
        --from=resnet50.safetensors --out=workdirs/resnet50_torchvision

Config fields are overridden as `--config.batch_size=512`. A mistake the user can fix ends in
one line on stderr naming the problem and the fix, with exit status 2 (1 for a NaN stop).
"""

import os
import re
import sys
import traceback

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from imagenet_train import protocols, write_errors
from imagenet_train.config import schema
from imagenet_train.errors import UserError

COMMANDS = ("prepare", "train", "evaluate", "models", "import-weights", "sweep", "report")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, optionally with :argument.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the summary.")
_CHECKPOINT = flags.DEFINE_string(
  "checkpoint",
  "latest",
  "evaluate: latest, best, or a step number. train: latest, or a step to resume from (the newer ones set aside).",
)
_FROM = flags.DEFINE_string("from", None, "import-weights: a PyTorch state_dict, .safetensors or .pth.")
_MODEL = flags.DEFINE_string(
  "model",
  None,
  "import-weights: the registered model the file holds; models: the comma-separated models to list (default: all).",
)
_OUT = flags.DEFINE_string(
  "out",
  None,
  "import-weights: the new workdir for the converted checkpoint; report: the folder for report.md and its PNG charts.",
)
_DATASET = flags.DEFINE_string(
  "dataset",
  None,
  "prepare: a tfds name (imagenet2012, imagenet_v2, imagenet_resized/64x64, cifar10, ...) or fashion_mnist_local.",
)
_DATA_DIR = flags.DEFINE_string(
  "data_dir", None, "prepare: the tfds data_dir, local or gs:// (default: tfds's, ~/tensorflow_datasets)."
)
_MANUAL_DIR = flags.DEFINE_string(
  "manual_dir",
  None,
  "prepare: the folder holding files you downloaded "
  "yourself (ImageNet's ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar).",
)
_SKIP_CORRUPT = flags.DEFINE_bool(
  "skip_corrupt",
  False,
  "prepare: leave out images that do not decode, and count them, instead of stopping at the first.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "Multi-host: HOST:PORT of process 0's coordinator (not needed under SLURM or on Cloud TPU VMs, where JAX finds it).",
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: how many processes take part.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index, from 0.")
_COORDINATOR_TIMEOUT = flags.DEFINE_integer(
  "coordinator_timeout", 300, "Multi-host: seconds to wait for every process to reach the coordinator before giving up."
)
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
  "heartbeat_timeout",
  30,
  "Multi-host: seconds without a process's heartbeat after which the others stop instead of waiting for it.",
)
_SWEEP = flags.DEFINE_string("sweep", None, "sweep: a sweep file (sweeps/NAME.py) of config overrides.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "sweep: print each run's launcher command instead of running it.")
_LAUNCHER = flags.DEFINE_enum(
  "launcher",
  "local",
  ["local", "multiprocess", "slurm", "tpu_vm"],
  "sweep --dry_run: the launcher whose commands are printed.",
)
_LAUNCHER_ARGS = flags.DEFINE_string(
  "launcher_args",
  "",
  "sweep --dry_run: options for the launcher, e.g. '--name=sweep --zone=us-central2-b --accelerator=v4-32' for tpu_vm.",
)
_RUNS = flags.DEFINE_list("runs", None, "report: workdirs, or folders of them (a sweep's), to tabulate.")
_PROTOCOL = flags.DEFINE_string(
  "protocol",
  None,
  f"evaluate: {', '.join(protocols.names())}, or "
  f"{protocols.ENSEMBLE} (with --ensemble); default: {protocols.CENTER}, as training "
  "evaluates.",
)
_ENSEMBLE = flags.DEFINE_list(
  "ensemble", None, "evaluate --protocol=ensemble: the member runs' workdirs; the results go to --workdir."
)
_ENSEMBLE_PROTOCOL = flags.DEFINE_string(
  "ensemble_protocol",
  None,
  "evaluate --protocol=ensemble: each member's protocol (default: the config's evaluation.protocol).",
)
_FAKE = flags.DEFINE_bool(
  "fake",
  False,
  "prepare --dataset=imagenet2012: first write fake ILSVRC2012 tarballs "
  "(4 classes, small images) into --manual_dir, to try configs' smoke variants.",
)
_KEEP_INIT = flags.DEFINE_string(
  "keep_init",
  None,
  "import-weights: a regular expression of PyTorch tensor "
  "names to leave at their initial values, e.g. '^fc\\.' for a new classifier.",
)


def _fail(message: str, exit_code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(exit_code)


def _config_file(argv) -> str | None:
  """The config file named on the command line, without its `:argument`."""
  given = next((arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")), None)
  return given and given.split(":", 1)[0]


def _unloadable_config_file(error: OSError, path: str | None) -> str:
  """config_flags' report of a config file it could not open; its last line is the reason."""
  return f"cannot load config file {path}: {str(error).splitlines()[-1].strip()}"


def _config_file_error(error: BaseException, path: str | None) -> str | None:
  """One line for an exception raised while the config file at `path` loaded (the user's code), naming the file,
  its line and the reason; None when the exception did not come from loading it."""
  if path is None:
    return None
  where = os.path.abspath(path)
  if isinstance(error, SyntaxError) and error.filename and os.path.abspath(error.filename) == where:
    return f"cannot load config file {path}, line {error.lineno}: {error.msg}"
  if isinstance(error, AttributeError) and error.name == "get_config":
    return f"config file {path} defines no get_config(): define `def get_config(arg=None)` returning a ConfigDict"
  lines = [
    frame.lineno for frame in traceback.extract_tb(error.__traceback__) if os.path.abspath(frame.filename) == where
  ]
  if not lines:
    return None
  reason = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {str(error).splitlines()[0]}"
  return f"cannot load config file {path}, line {lines[-1]}: {reason}"


def _wrapped_config_file_error(error: flags.Error, argv) -> str | None:
  """One line for a ValueError or TypeError raised while the config file loaded: config_flags re-raises it with the
  traceback as its text, and absl wraps that in a flag error; the user's own exception is the chain's last."""
  while error.__context__ is not None:
    error = error.__context__
  return _config_file_error(error, _config_file(argv))


def _no_field_error(error: BaseException, argv) -> str:
  """ml_collections' refusal of an override naming no field, as a sentence: its message is the field, quoted,
  then perhaps a line suggesting a near name."""
  while error.args and isinstance(error.args[0], BaseException):  # an AttributeError around the KeyError
    error = error.args[0]
  field, *suggestion = str(error.args[0] if error.args else error).split("\n")
  field = field.strip("\"'")
  flag = next(
    (arg.split("=")[0] for arg in argv if arg.startswith("--config.") and arg.split("=")[0].split(".")[-1] == field),
    f"--config.{field}",
  )
  near = re.search(r'"([^"]+)"', suggestion[0]) if suggestion else None  # 'Did you mean "X" instead of "Y"?'
  hint = f"did you mean {near.group(1)}? Otherwise check" if near else "check"
  return f"the config has no field {flag[len('--config.') :]} ({flag}): {hint} its spelling against the config file"


_OVERRIDE_KINDS = {bool: "True or False", int: "a whole number", float: "a number", tuple: "a tuple such as '(1, 2)'"}


def _override_value_error(error: flags.Error) -> str | None:
  """absl's refusal of a `--config.FIELD=VALUE` its field's type cannot parse, as a sentence naming the type and
  an example (the config's own value); None for other flags."""
  given = re.match(r"flag --config\.([\w.]+)=(.*?): ", str(error))
  loaded = flags.FLAGS["config"].value if given else None
  if loaded is None:
    return None
  field, value = given.groups()
  example = loaded
  for part in field.split("."):
    example = example[part] if part in example else None
    if example is None:
      return None
  kind = next((text for kind, text in _OVERRIDE_KINDS.items() if type(example) is kind), None)
  if kind is None:
    return None
  return schema.field_error(field, value, kind, example).args[0]


def _parse_flags(argv):
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as error:
    _fail(_override_value_error(error) or _wrapped_config_file_error(error, argv) or f"{error} (see --helpfull)")
  except Exception as error:  # the config file runs here: any mistake in it is the user's
    message = _config_file_error(error, _config_file(argv))
    if message is None and isinstance(error, OSError):  # an override applied to a file that failed to load
      message = _unloadable_config_file(error, _config_file(argv))
    if message is None and isinstance(error, (AttributeError, KeyError)):  # an override naming no config field
      message = _no_field_error(error, argv)
    if message is None:
      raise
    _fail(message)
  if len(rest) != 2 or rest[1] not in COMMANDS:
    _fail(f"expected one command, one of {', '.join(COMMANDS)}; got {' '.join(rest[1:]) or 'none'}")
  return rest


def _config(workdir_flag: str = "workdir"):
  config = _CONFIG.value
  path = flags.FLAGS["config"].config_filename if flags.FLAGS["config"].present else None
  try:
    config.keys()  # config_flags defers the error of a file that failed to load until first use
  except OSError as error:
    _fail(_unloadable_config_file(error, path))
  except AttributeError:
    pass
  if config is None and path:
    _fail(f"get_config() in {path} returned None: end it with `return config`, an ml_collections.ConfigDict")
  if config is None:
    _fail("--config is required: pass --config=configs/default.py (or another file in configs/)")
  if not isinstance(config, ml_collections.ConfigDict):
    _fail(
      f"get_config() in {path} returned a {type(config).__name__}, not an ml_collections.ConfigDict: build the "
      "config with ml_collections.ConfigDict (configs/default.py shows how)"
    )
  if not flags.FLAGS[workdir_flag].value:
    _fail(f"--{workdir_flag} is required: pass --{workdir_flag}=DIR for checkpoints and metrics")
  schema.check(config)  # every value, before anything runs or is written
  return config


def _print_results(title: str, results: dict):
  print(title)
  for key, value in results.items():
    print(f"  {key:28s} {value:.4f}" if isinstance(value, float) else f"  {key:28s} {value}")


def _prepare():
  from imagenet_train.data import prepare

  if not _DATASET.value:
    _fail("prepare needs --dataset=NAME, e.g. --dataset=imagenet2012 --manual_dir=DIR")
  if _FAKE.value:
    from imagenet_train.data import fake_imagenet

    if _DATASET.value != "imagenet2012" or not _MANUAL_DIR.value:
      _fail("--fake writes fake ILSVRC2012 tarballs: pass --dataset=imagenet2012 and --manual_dir=DIR")
    if not os.path.exists(os.path.join(_MANUAL_DIR.value, prepare.IMAGENET_TRAIN_TAR)):
      fake_imagenet.write_tarballs(_MANUAL_DIR.value)
  report = prepare.prepare(
    _DATASET.value, data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value, skip_corrupt=_SKIP_CORRUPT.value
  )
  state = "was already prepared" if report.already_prepared else "is prepared"
  print(f"{_DATASET.value} {state} in {report.data_dir}:")
  for split, count in report.examples.items():
    print(f"  {split:12s} {count:>10,d} examples")
  if report.skipped:
    print(f"  skipped {len(report.skipped)} corrupt image(s): {', '.join(report.skipped)}")


def _start_processes():
  from imagenet_train import distributed

  distributed.initialize(
    _COORDINATOR.value,
    _NUM_PROCESSES.value,
    _PROCESS_ID.value,
    timeout=_COORDINATOR_TIMEOUT.value,
    heartbeat_timeout=_HEARTBEAT_TIMEOUT.value,
  )


def _is_main_process() -> bool:
  import jax

  return jax.process_index() == 0


def _train():
  from imagenet_train import train

  config = _config()
  resume_from = _resume_step()
  _start_processes()
  try:
    summary = train.train_and_evaluate(config, _WORKDIR.value, resume_from=resume_from)
  except train.AlreadyFinished as finished:
    if _is_main_process():
      _print_finished(config, finished)
    return
  if _is_main_process():
    _print_summary("Training finished:", config, summary)


def _resume_step() -> int | None:
  """train's --checkpoint: None for the newest, else the step to resume from."""
  which = _CHECKPOINT.value
  if which == "latest":
    return None
  if not which.isdigit():
    _fail(f"--checkpoint={which}: train resumes from `latest` (the default) or a step number, e.g. --checkpoint=2000")
  return int(which)


def _print_finished(config, finished) -> None:
  """A rerun of a finished run: its results as it saved them; nothing is trained or written."""
  from imagenet_train import train

  past = " past the config's last step" if finished.step > finished.total_steps else ""
  print(f"Nothing to train: {finished}{past}.")
  if finished.summary is None:
    print(f"It wrote no {train.SUMMARY}: score its checkpoint with `python -m imagenet_train evaluate`.")
  else:
    _print_summary(f"Its results ({os.path.join(_WORKDIR.value, train.SUMMARY)}):", config, finished.summary)


def _print_summary(title: str, config, summary: dict) -> None:
  from imagenet_train import results

  split = config.data.eval_split
  _print_results(
    title,
    {
      f"{split} top-1 error %": summary.get(results.scalar_key(results.RAW, "top1_error"), float("nan")),
      f"{split} top-5 error %": summary.get(results.scalar_key(results.RAW, "top5_error"), float("nan")),
      f"{split} log loss": summary.get(results.scalar_key(results.RAW, "log_loss"), float("nan")),
      "steps": summary["steps"],
      "wall time (s)": summary["wall_time_s"],
      "of which evaluation (s)": summary["eval_time_s"],
      "training images/s": summary["train_images_per_second"],
    },
  )


def _evaluate():
  from imagenet_train import evaluate

  config = _config()
  which = _CHECKPOINT.value
  if which not in ("latest", "best") and not which.isdigit():
    _fail(f"--checkpoint={which} is not latest, best or a step number")
  protocol = _PROTOCOL.value or protocols.CENTER
  if protocol != protocols.ENSEMBLE:
    protocols.get(protocol)  # an unknown name fails before the processes start
  if _ENSEMBLE.value and protocol != protocols.ENSEMBLE:
    _fail(f"--ensemble is for --protocol={protocols.ENSEMBLE}, not {protocol}")
  if protocol == protocols.ENSEMBLE and not _ENSEMBLE.value:
    _fail(f"--protocol={protocols.ENSEMBLE} needs --ensemble=WORKDIR,WORKDIR[,...]: the runs to average")
  _start_processes()
  if protocol == protocols.ENSEMBLE:
    member_protocol = _ENSEMBLE_PROTOCOL.value or config.evaluation.protocol
    evaluation = evaluate.evaluate_ensemble(config, _ENSEMBLE.value, _WORKDIR.value, which, member_protocol)
    title = f"Ensemble of {len(_ENSEMBLE.value)} runs, {member_protocol} each:"
  else:
    evaluation = evaluate.evaluate_checkpoint(config, _WORKDIR.value, which, protocol)
    title = f"Step {evaluation.step} under the {protocol} protocol ({evaluation.views} views per image):"
  if _is_main_process():
    _print_evaluation(title, evaluation)


def _print_evaluation(title: str, evaluation):
  print(title)
  for name, stats in evaluation.parameters.items():
    print(
      f"  {name + ' parameters':18s} top-1 error {stats.top1_error:6.2f}%   top-5 error "
      f"{stats.top5_error:6.2f}%   log loss {stats.log_loss:.4f}   ({stats.num_examples} images)"
    )
  raw = next(iter(evaluation.parameters.values()))
  worst = sorted((accuracy, index) for index, accuracy in enumerate(raw.per_class_accuracy) if accuracy is not None)
  names = evaluation.class_names or []
  print(
    "  lowest per-class top-1 accuracy: "
    + ", ".join(
      f"{names[index] if index < len(names) else index} {100 * accuracy:.1f}%" for accuracy, index in worst[:5]
    )
  )
  print(f"  written to {_WORKDIR.value}: " + ", ".join([evaluation.file_name, *evaluation.confusion_png.values()]))


def _models():
  from imagenet_train import models

  print(f"{'model':22s} {'parameters':>14s} {'multiply-adds':>16s}  input")
  for name, params, macs, shape in models.summaries(_MODEL.value.split(",") if _MODEL.value else None):
    print(f"{name:22s} {params:>14,d} {macs / 1e9:>14.3f} G  {'x'.join(map(str, shape))}")


def _import_weights():
  from imagenet_train import weights

  config = _config("out")
  if not _FROM.value or not _MODEL.value:
    _fail("import-weights needs --from=FILE (.safetensors or .pth) and --model=NAME")
  config.model = _MODEL.value
  count = weights.import_weights(config, _FROM.value, _OUT.value, _KEEP_INIT.value)
  print(f"Imported {count} tensors from {_FROM.value} into {_OUT.value} as step 0 of {_MODEL.value}.")
  print(f"Evaluate: python -m imagenet_train evaluate --config=<the same config> --workdir={_OUT.value}")


_LAUNCHER_COMMANDS = {
  "local": "launch/local.sh",
  "multiprocess": "launch/multiprocess.sh 2",
  "slurm": "sbatch launch/slurm.sbatch",
  "tpu_vm": "launch/tpu_vm.sh",
}


def _sweep():
  import shlex

  from imagenet_train import checkpoint, report, sweep, train

  config = _config()
  if not _SWEEP.value:
    _fail("sweep needs --sweep=FILE, e.g. --sweep=sweeps/lr_batch.py")
  runs = sweep.load_sweep(_SWEEP.value)
  sweep.check_overrides(config, runs)  # every field named before any run starts
  name = os.path.splitext(os.path.basename(_SWEEP.value))[0]
  expanded = sweep.expand(config, runs, _WORKDIR.value, name)
  if _DRY_RUN.value:
    base = [f"--config={flags.FLAGS['config'].config_filename}"] + [
      arg for arg in sys.argv[1:] if arg.startswith("--config.")
    ]
    launcher = " ".join([_LAUNCHER_COMMANDS[_LAUNCHER.value], _LAUNCHER_ARGS.value]).strip()
    for run in expanded:
      args = ["train", *base, f"--workdir={run.workdir}", *sweep.override_flags(run.overrides)]
      print(f"{launcher} -- {shlex.join(args)}")
    return
  failed = []
  for index, run in enumerate(expanded):
    if os.path.exists(os.path.join(run.workdir, train.SUMMARY)):
      print(f"[{index + 1}/{len(expanded)}] {run.name}: finished before, skipped")
      continue
    print(f"[{index + 1}/{len(expanded)}] {run.name} in {run.workdir}", flush=True)
    try:
      checkpoint.check_workdir(run.workdir)
      sweep.write_run_info(run)
      train.train_and_evaluate(run.config, run.workdir)
    except train.AlreadyFinished as finished:  # trained to its end before, but killed before its summary
      print(f"  {finished}")
    except UserError as error:  # one run's mistake (a NaN, say) does not stop the others
      print(f"  failed: {error}", file=sys.stderr)
      failed.append(run.name)
  print(report.write_report([os.path.join(_WORKDIR.value, name)]))
  if failed:
    raise UserError(
      f"{len(failed)} of {len(expanded)} runs failed: {', '.join(failed)}; rerun the same command "
      "to retry them (finished runs are skipped)"
    )


def _report():
  from imagenet_train import report

  if not _RUNS.value:
    _fail("report needs --runs=DIR[,DIR...]: workdirs of finished runs, or a sweep's folder")
  print(report.write_report(_RUNS.value, _OUT.value))


def main(argv):
  command = argv[1]
  try:
    commands = {
      "prepare": _prepare,
      "train": _train,
      "evaluate": _evaluate,
      "models": _models,
      "import-weights": _import_weights,
      "sweep": _sweep,
      "report": _report,
    }
    commands[command]()
  except UserError as error:
    logging.flush()
    _fail(str(error), error.exit_code)


class _QuietLibraries(logging.logging.Filter):
  """Drops Orbax's and tf.data's per-save INFO chatter from the console; warnings still pass,
  but for Orbax's note that a periodic save carries no eval metric, which is by design."""

  def filter(self, record):
    if "did not provide metrics" in str(record.msg):
      return False
    return record.levelno > logging.logging.INFO or not any(
      part in record.pathname for part in ("/orbax/", "/tensorflow/")
    )


def run():
  logging.get_absl_handler().addFilter(_QuietLibraries())
  write_errors.quiet_background_failures()  # a failed write is the one `error:` line, not writer threads' tracebacks
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
