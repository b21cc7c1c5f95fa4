"""Every config field with its default; the files in configs/ start from `base_config()`.

Durations are in epochs; `epochs_to_steps` is the one conversion to steps. Each block's rules follow it: `check`
refuses, before anything runs, a value that cannot be right, naming the field, the value, what it must be and an
example (the field's default).
"""

import dataclasses
import os
from typing import Any

import ml_collections

from imagenet_train import rules
from imagenet_train.errors import UserError


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
  """A length in epochs as a whole number of steps, rounded to the nearest."""
  return int(round(epochs * steps_per_epoch))


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ""
  c.model_options = ml_collections.ConfigDict()  # the family's own constructor options
  c.dtype = "bfloat16"  # compute; parameters, optimizer state and BatchNorm statistics stay fp32
  c.model_parallelism = 1  # devices on the mesh's model axis (AlexNet's towers); the data axis takes the rest

  c.data = data_config()

  c.batch_size = 256  # global, over all devices of all processes
  c.eval_batch_size = 256
  c.num_epochs = 90.0
  c.num_train_steps = -1  # > 0 overrides num_epochs

  c.learning_rate = 0.1
  c.optimizer = optimizer_config()
  c.schedule = schedule_config()

  c.label_smoothing = 0.0

  c.averaging = averaging_config()
  c.evaluation = evaluation_config()
  c.paper = paper_config()

  c.log_every_steps = 100
  c.eval_every_epochs = 1.0
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.async_checkpoints = True
  # A wait that outlives this (a hung peer's collective, a stuck file system under Orbax) ends the run: see watchdog.
  c.watchdog_timeout_s = 3600.0
  c.profile = False  # write a profiler trace of a few steps to the workdir
  c.profile_first_step = 10
  c.profile_steps = 5
  return c


_BASE_RULES = {
  "seed": rules.whole(),
  "model": rules.Text(nonempty=True),
  "model_options": None,  # each family checks its own (models.OptionError)
  "dtype": rules.OneOf(("float32", "bfloat16", "float16")),
  "model_parallelism": rules.POSITIVE_WHOLE,
  "batch_size": rules.POSITIVE_WHOLE,
  "eval_batch_size": rules.POSITIVE_WHOLE,
  "num_epochs": rules.POSITIVE,
  "num_train_steps": rules.Either(-1, "train num_epochs", rules.POSITIVE_WHOLE),
  "learning_rate": rules.NON_NEGATIVE,
  "label_smoothing": rules.BELOW_ONE,
  "log_every_steps": rules.POSITIVE_WHOLE,
  "eval_every_epochs": rules.POSITIVE,
  "checkpoint_every_steps": rules.POSITIVE_WHOLE,
  "keep_checkpoints": rules.POSITIVE_WHOLE,  # 0 would keep nothing to resume from
  "async_checkpoints": rules.Boolean(),
  "watchdog_timeout_s": rules.POSITIVE,
  "profile": rules.Boolean(),
  "profile_first_step": rules.COUNT,
  "profile_steps": rules.POSITIVE_WHOLE,
}


def optimizer_config() -> ml_collections.ConfigDict:
  """The optimizer `name` picks, with the fields every optimizer shares here and each one's own in its block."""
  o = ml_collections.ConfigDict()
  o.name = "sgd"  # sgd | adam | rmsprop: the block of that name holds its own fields
  o.weight_decay = 1e-4
  o.weight_decay_mode = "l2"  # l2: added to every weight's gradient | decoupled: no BN, no biases
  o.weight_decay_exclude = ()  # parameter names decay never touches, e.g. ("slope",): PReLU's
  o.grad_clip_norm = 0.0
  o.sgd = ml_collections.ConfigDict()
  o.sgd.momentum = 0.9  # 0: plain SGD
  o.sgd.nesterov = False
  o.adam = ml_collections.ConfigDict()
  o.adam.b1 = 0.9
  o.adam.b2 = 0.999
  o.adam.eps = 1e-8
  o.rmsprop = ml_collections.ConfigDict()
  o.rmsprop.decay = 0.9
  o.rmsprop.eps = 1e-8  # added to the root mean square (outside the square root)
  o.rmsprop.momentum = 0.9  # 0: none
  return o


_OPTIMIZER_RULES = {
  "name": rules.OneOf(("sgd", "adam", "rmsprop")),
  "weight_decay": rules.NON_NEGATIVE,
  "weight_decay_mode": rules.OneOf(("l2", "decoupled")),
  "weight_decay_exclude": rules.Each(rules.Text(nonempty=True)),
  "grad_clip_norm": rules.NON_NEGATIVE,
  "sgd.momentum": rules.BELOW_ONE,
  "sgd.nesterov": rules.Boolean(),
  "adam.b1": rules.BELOW_ONE,
  "adam.b2": rules.BELOW_ONE,
  "adam.eps": rules.POSITIVE,
  "rmsprop.decay": rules.BELOW_ONE,
  "rmsprop.eps": rules.POSITIVE,
  "rmsprop.momentum": rules.BELOW_ONE,
}


# The optimizer fields of the flat block that configs recorded before each optimizer had its own (config.json of
# older runs): field -> (block, its name there), by the optimizer that read it.
_FLAT_OPTIMIZER_FIELDS = {
  "sgd": {"momentum": "momentum", "nesterov": "nesterov"},
  "adam": {"b1": "b1", "b2": "b2", "eps": "eps"},
  "rmsprop": {"rms_decay": "decay", "eps": "eps", "momentum": "momentum"},
}


def upgrade_recorded(recorded: dict) -> dict:
  """A config recorded by an earlier version in this version's layout: a flat optimizer block's fields move to
  their optimizer's own block (the fields of the optimizers not in use, which nothing read, are dropped)."""
  optimizer = dict(recorded.get("optimizer", {}))
  flat = {field for fields in _FLAT_OPTIMIZER_FIELDS.values() for field in fields}
  if not flat & optimizer.keys():
    return recorded
  blocks = optimizer_config().to_dict()
  for name, fields in _FLAT_OPTIMIZER_FIELDS.items():
    if name == optimizer.get("name", "sgd"):
      blocks[name].update({new: optimizer[old] for old, new in fields.items() if old in optimizer})
  upgraded = {key: value for key, value in optimizer.items() if key not in flat}
  return {**recorded, "optimizer": {**upgraded, **{name: blocks[name] for name in _FLAT_OPTIMIZER_FIELDS}}}


def recorded_config(recorded: dict) -> ml_collections.ConfigDict:
  """A config a run recorded (its config.json), in this version's layout: fields added since then take their
  defaults, so that it passes `check`."""
  config = base_config()

  def merge(target: ml_collections.ConfigDict, values: dict) -> None:
    for key, value in values.items():
      if isinstance(value, dict) and isinstance(target.get(key), ml_collections.ConfigDict):
        merge(target[key], value)
      else:
        target[key] = value

  merge(config, upgrade_recorded(recorded))
  return config


def schedule_config() -> ml_collections.ConfigDict:
  """The learning rate's schedule, its lengths in epochs."""
  s = ml_collections.ConfigDict()
  s.name = "cosine"  # constant | steps | exponential | cosine | plateau
  s.warmup_epochs = 0.0
  s.warmup_start_fraction = 0.0
  s.boundaries_epochs = (30, 60, 80)  # steps
  s.decay_factor = 0.1  # steps, exponential
  s.decay_every_epochs = 1.0  # exponential
  s.final_fraction = 0.0  # cosine
  s.plateau = ml_collections.ConfigDict()
  s.plateau.patience = 1  # evaluations without improvement before dividing
  s.plateau.factor = 0.1
  s.plateau.threshold = 1e-3  # top-1 must rise by this much to count
  s.plateau.min_factor = 1e-3
  return s


def _schedule_names():
  from imagenet_train import optim  # the schedules it builds, read only when a config is checked

  return optim.SCHEDULES


_SCHEDULE_RULES = {
  "name": rules.OneOf(_schedule_names),
  "warmup_epochs": rules.NON_NEGATIVE,
  "warmup_start_fraction": rules.FRACTION,
  "boundaries_epochs": rules.Each(rules.POSITIVE, increasing=True),
  "decay_factor": rules.FACTOR,
  "decay_every_epochs": rules.POSITIVE,
  "final_fraction": rules.FRACTION,
  "plateau.patience": rules.POSITIVE_WHOLE,
  "plateau.factor": rules.Number(0.0, 1.0, low_open=True, high_open=True),
  "plateau.threshold": rules.NON_NEGATIVE,
  "plateau.min_factor": rules.FACTOR,
}


def averaging_config() -> ml_collections.ConfigDict:
  """Averages of the parameters kept beside them during training and evaluated beside them."""
  a = ml_collections.ConfigDict()
  a.ema_decay = 0.0  # > 0: an exponential moving average of the parameters, e.g. 0.9999
  a.polyak = False  # the running mean of the parameters since polyak_start_epochs (GoogLeNet's Polyak averaging)
  a.polyak_start_epochs = 0.0
  return a


_AVERAGING_RULES = {
  "ema_decay": rules.BELOW_ONE,
  "polyak": rules.Boolean(),
  "polyak_start_epochs": rules.NON_NEGATIVE,
}


def evaluation_config() -> ml_collections.ConfigDict:
  """How `evaluate --protocol` builds each protocol's views from the eval images.

  center uses data.pp_eval as it is; the others decode, resize and crop as below and then apply
  pp_eval's final value ops (normalize, subtract_mean), so that every protocol sees the same values.
  """
  e = ml_collections.ConfigDict()
  e.protocol = "center"  # the paper's protocol, evaluate's default: a name in imagenet_train/protocols.py
  e.resize = 256  # 10crop: the shorter side before cropping
  e.crop = 224  # 10crop, multicrop, 144crop: the crop side
  e.square = False  # 10crop: crop the central resize x resize square first (AlexNet, ZFNet)
  e.scales = (256, 384, 512)  # dense and multicrop: the shorter sides Q, scores averaged over them
  e.googlenet_scales = (256, 288, 320, 352)  # 144crop
  e.flip = True  # dense: average with the mirrored image
  e.multiple = 32  # dense: the longer side is rounded to a multiple of this, bounding the shapes compiled
  return e


def _protocol_names():
  from imagenet_train import protocols  # the registry, read only when a config is checked

  return protocols.names()


_EVALUATION_RULES = {
  "protocol": rules.OneOf(_protocol_names),
  "resize": rules.POSITIVE_WHOLE,
  "crop": rules.POSITIVE_WHOLE,
  "square": rules.Boolean(),
  "scales": rules.Each(rules.POSITIVE_WHOLE, nonempty=True),
  "googlenet_scales": rules.Each(rules.POSITIVE_WHOLE, nonempty=True),
  "flip": rules.Boolean(),
  "multiple": rules.POSITIVE_WHOLE,
}


def paper_config() -> ml_collections.ConfigDict:
  """What the paper reported, for `report` to put beside the run. Errors are in percent."""
  p = ml_collections.ConfigDict()
  p.reference = ""  # "Simonyan and Zisserman, ICLR 2015 (arXiv 1409.1556)"
  p.table = ""  # where the numbers are: "Table 3, row D, S=256, Q=256"
  p.protocol = ""  # the protocol of the single-model numbers: a name in imagenet_train/protocols.py
  p.split = "val"  # val | test
  p.top1 = ml_collections.config_dict.placeholder(float)  # single model; None where the paper gives none
  p.top5 = ml_collections.config_dict.placeholder(float)
  p.ensemble_models = 0  # models in the paper's ensemble; 0 for none
  p.ensemble_protocol = ""
  p.ensemble_split = ""
  p.ensemble_top1 = ml_collections.config_dict.placeholder(float)
  p.ensemble_top5 = ml_collections.config_dict.placeholder(float)
  p.notes = ""  # what differs between the paper's setting and this config
  return p


_ERROR_PERCENT = rules.Optional(rules.Number(0.0, 100.0))
_PAPER_RULES = {
  "reference": rules.Text(),
  "table": rules.Text(),
  "protocol": rules.Text(),
  "split": rules.OneOf(("val", "test")),
  "top1": _ERROR_PERCENT,
  "top5": _ERROR_PERCENT,
  "ensemble_models": rules.COUNT,
  "ensemble_protocol": rules.Text(),
  "ensemble_split": rules.OneOf(("", "val", "test")),
  "ensemble_top1": _ERROR_PERCENT,
  "ensemble_top5": _ERROR_PERCENT,
  "notes": rules.Text(),
}


def data_config() -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  d.name = ""  # a tfds name, or one of the project's local builders
  d.data_dir = ml_collections.config_dict.placeholder(str)  # None: tfds's default
  d.manual_dir = ml_collections.config_dict.placeholder(str)
  d.train_split = "train"
  d.eval_split = "validation"
  d.image_key = "image"
  d.label_key = "label"
  d.pp_train = ""
  d.pp_eval = ""
  d.host_sharding = "split"  # split: each process its own part | global: one order, the same for any host count
  d.shuffle_buffer = 16_384
  d.cache_raw = False  # keep the encoded records in memory after the first epoch
  d.cache_eval = False  # keep the preprocessed eval split in memory from one evaluation to the next
  d.normalize_on_device = True  # a final normalize op runs in the step: the host sends uint8
  d.threads = 0  # tf.data's private thread pool; 0 lets tf.data decide
  d.host_prefetch = 2
  d.device_prefetch = 2
  return d


@dataclasses.dataclass(frozen=True)
class _ExistingDirectory:
  """None (tfds's default), a bucket path, or a folder that exists: a mistyped data_dir would otherwise
  silently prepare a fresh dataset somewhere new."""

  def describe(self) -> str:
    return (
      "None or a folder that exists (create it, or run `python -m imagenet_train prepare --dataset=NAME "
      "--data_dir=DIR`)"
    )

  def problem(self, value) -> str | None:
    if value is None or (isinstance(value, str) and ("://" in value or os.path.isdir(os.path.expanduser(value)))):
      return None
    return self.describe()


_DATA_RULES = {
  "name": rules.Text(nonempty=True),
  "data_dir": _ExistingDirectory(),
  "manual_dir": rules.Optional(rules.Text(nonempty=True)),
  "train_split": rules.Text(),  # empty: an evaluation-only dataset; the split's syntax is checked on the dataset
  "eval_split": rules.Text(nonempty=True),
  "image_key": rules.Text(nonempty=True),
  "label_key": rules.Text(nonempty=True),
  "pp_train": rules.Text(),
  "pp_eval": rules.Text(nonempty=True),
  "host_sharding": rules.OneOf(("split", "global")),
  "shuffle_buffer": rules.POSITIVE_WHOLE,
  "cache_raw": rules.Boolean(),
  "cache_eval": rules.Boolean(),
  "normalize_on_device": rules.Boolean(),
  "threads": rules.COUNT,  # 0: tf.data decides
  "host_prefetch": rules.POSITIVE_WHOLE,
  "device_prefetch": rules.POSITIVE_WHOLE,
}

RULES = {
  **_BASE_RULES,
  **{f"optimizer.{field}": rule for field, rule in _OPTIMIZER_RULES.items()},
  **{f"schedule.{field}": rule for field, rule in _SCHEDULE_RULES.items()},
  **{f"averaging.{field}": rule for field, rule in _AVERAGING_RULES.items()},
  **{f"evaluation.{field}": rule for field, rule in _EVALUATION_RULES.items()},
  **{f"paper.{field}": rule for field, rule in _PAPER_RULES.items()},
  **{f"data.{field}": rule for field, rule in _DATA_RULES.items()},
}


def flag_value(value) -> str:
  """`value` as it is written after `--config.FIELD=` on a command line."""
  if isinstance(value, str):
    return value or "''"
  if isinstance(value, (tuple, list)):
    return f"'{tuple(value)}'"
  return repr(value)


def field_error(field: str, value, must_be: str, example) -> UserError:
  return UserError(
    f"--config.{field}={flag_value(value)} is not {must_be}: e.g. --config.{field}={flag_value(example)}"
  )


# The example a refusal gives for the fields whose default is a placeholder each config file replaces.
EXAMPLES = {
  "model": "resnet50",
  "data.name": "imagenet2012",
  "data.pp_eval": "decode|resize_small(256)|center_crop(224)",
}


def check(config: ml_collections.ConfigDict) -> None:
  """Refuses the first field whose value its rule rejects, naming it, what it must be and an example."""
  defaults = base_config()
  for field, rule in RULES.items():
    value, default = config, defaults
    for part in field.split("."):
      if part not in value:
        raise UserError(
          f"the config has no field {field}: start the config file from imagenet_train.config.schema.base_config()"
        )
      value, default = value[part], default[part]
    if rule is not None and (must_be := rule.problem(value)) is not None:
      raise field_error(field, value, must_be, EXAMPLES.get(field, default))


# What resuming does when a field differs from the config a checkpoint was trained with (recorded in its meta).
REFUSE = "refuse"  # the saved state cannot be read with the new value, or would mean something else
WARN = "warn"  # the run goes on, but its data stream no longer continues an uninterrupted run's
# Every other field may change silently: intervals, evaluation, the learning rate one lowers after a NaN.


@dataclasses.dataclass(frozen=True)
class OnResume:
  action: str
  why: str  # what the change breaks, completing "changing FIELD ..."
  part: Any = None  # the part of the value the saved state depends on (bool: only whether it is zero)


_OPTIMIZER_STATE = "changes the layout of the saved optimizer state"
_DATA_STREAM = "changes the data stream, which then differs from an uninterrupted run's"
ON_RESUME = {
  "model_options": OnResume(REFUSE, "gives the saved parameters another meaning"),
  "optimizer.name": OnResume(REFUSE, _OPTIMIZER_STATE),
  "optimizer.weight_decay_mode": OnResume(REFUSE, _OPTIMIZER_STATE),
  "optimizer.weight_decay": OnResume(REFUSE, f"between zero and non-zero {_OPTIMIZER_STATE}", part=bool),
  "optimizer.grad_clip_norm": OnResume(REFUSE, f"between zero and non-zero {_OPTIMIZER_STATE}", part=bool),
  "optimizer.sgd.momentum": OnResume(REFUSE, f"between zero and non-zero {_OPTIMIZER_STATE}", part=bool),
  "optimizer.rmsprop.momentum": OnResume(REFUSE, f"between zero and non-zero {_OPTIMIZER_STATE}", part=bool),
  "schedule.name": OnResume(REFUSE, "changes the kind of learning-rate schedule the saved run follows"),
  "averaging.ema_decay": OnResume(REFUSE, "between zero and non-zero adds or drops a saved average", part=bool),
  "averaging.polyak": OnResume(REFUSE, "adds or drops a saved average"),
  "batch_size": OnResume(WARN, _DATA_STREAM),
  "seed": OnResume(WARN, _DATA_STREAM),
  "data.name": OnResume(WARN, _DATA_STREAM),
  "data.train_split": OnResume(WARN, _DATA_STREAM),
  "data.pp_train": OnResume(WARN, _DATA_STREAM),
  "data.shuffle_buffer": OnResume(WARN, _DATA_STREAM),
  "data.host_sharding": OnResume(WARN, _DATA_STREAM),
}


@dataclasses.dataclass(frozen=True)
class ResumeChange:
  field: str
  saved: Any
  new: Any
  rule: OnResume

  def describe(self) -> str:
    return (
      f"--config.{self.field}={flag_value(self.new)} differs from the {flag_value(self.saved)} the checkpoint was "
      f"trained with, and changing it {self.rule.why}"
    )


def _leaves(tree: dict, prefix: str = "") -> dict:
  leaves = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      leaves.update(_leaves(value, f"{prefix}{key}."))
    else:
      leaves[f"{prefix}{key}"] = value
  return leaves


def resume_changes(recorded: dict, config: ml_collections.ConfigDict) -> list[ResumeChange]:
  """The fields of ON_RESUME that differ between a recorded config (the checkpoint's) and `config`, each with its
  rule; a model option by its own name. Fields the recorded config lacks (an older version's) are not compared."""
  saved, new = _leaves(upgrade_recorded(recorded)), _leaves(config.to_dict())
  changes = []
  for field, value in new.items():
    rule = ON_RESUME.get(field) or ON_RESUME.get(field.split(".")[0] if field.startswith("model_options.") else "")
    if rule is None or field not in saved:
      continue
    old = tuple(saved[field]) if isinstance(saved[field], list) else saved[field]
    value = tuple(value) if isinstance(value, list) else value
    part = rule.part or (lambda v: v)
    if part(old) != part(value):
      changes.append(ResumeChange(field, old, value, rule))
  changes += [  # a model option the new config drops
    ResumeChange(field, saved[field], None, ON_RESUME["model_options"])
    for field in saved
    if field.startswith("model_options.") and field not in new
  ]
  return changes
