"""Every config field with its default; the files in configs/ start from `base_config()`.

Durations are in epochs; `epochs_to_steps` is the one conversion to steps.
"""

import ml_collections


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
  c.profile = False  # write a profiler trace of a few steps to the workdir
  c.profile_first_step = 10
  c.profile_steps = 5
  return c


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


def averaging_config() -> ml_collections.ConfigDict:
  """Averages of the parameters kept beside them during training and evaluated beside them."""
  a = ml_collections.ConfigDict()
  a.ema_decay = 0.0  # > 0: an exponential moving average of the parameters, e.g. 0.9999
  a.polyak = False  # the running mean of the parameters since polyak_start_epochs (GoogLeNet's Polyak averaging)
  a.polyak_start_epochs = 0.0
  return a


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
