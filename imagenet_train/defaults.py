"""Every config field with its default; the files in configs/ start from `base_config()`.

It lives in the package rather than in configs/ so that a config file loads from any working
directory: config files are read by path, not imported as a package.
"""

import ml_collections


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
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"  # sgd | adam | rmsprop
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.rms_decay = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_mode = "l2"  # l2: added to every weight's gradient | decoupled: no BN, no biases
  c.optimizer.weight_decay_exclude = ()  # parameter names decay never touches, e.g. ("slope",): PReLU's
  c.optimizer.grad_clip_norm = 0.0

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = "cosine"  # constant | steps | exponential | cosine | plateau
  c.schedule.warmup_epochs = 0.0
  c.schedule.warmup_start_fraction = 0.0
  c.schedule.boundaries_epochs = (30, 60, 80)  # steps
  c.schedule.decay_factor = 0.1  # steps, exponential
  c.schedule.decay_every_epochs = 1.0  # exponential
  c.schedule.final_fraction = 0.0  # cosine
  c.schedule.plateau = ml_collections.ConfigDict()
  c.schedule.plateau.patience = 1  # evaluations without improvement before dividing
  c.schedule.plateau.factor = 0.1
  c.schedule.plateau.threshold = 1e-3  # top-1 must rise by this much to count
  c.schedule.plateau.min_factor = 1e-3

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


def averaging_config() -> ml_collections.ConfigDict:
  """Averages of the parameters kept beside them during training and evaluated beside them."""
  a = ml_collections.ConfigDict()
  a.ema_decay = 0.0  # > 0: an exponential moving average of the parameters, e.g. 0.9999
  a.polyak = False  # the running mean of the parameters since polyak_start_epochs (GoogLeNet's Polyak averaging)
  a.polyak_start_epochs = 0.0
  return a


# The evaluation protocols `evaluate --protocol` runs (imagenet_train/protocols.py).
PROTOCOLS = ("center", "10crop", "dense", "multicrop", "144crop")


def evaluation_config() -> ml_collections.ConfigDict:
  """How `evaluate --protocol` builds each protocol's views from the eval images.

  center uses data.pp_eval as it is; the others decode, resize and crop as below and then apply
  pp_eval's final value ops (normalize, subtract_mean), so that every protocol sees the same values.
  """
  e = ml_collections.ConfigDict()
  e.protocol = "center"  # the paper's protocol, evaluate's default: one of PROTOCOLS
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
  p.protocol = ""  # the protocol of the single-model numbers, one of PROTOCOLS
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


# ImageNet's per-channel mean and standard deviation on the [0, 1] scale (torchvision's figures).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_NORMALIZE = f"normalize(mean={IMAGENET_MEAN}, std={IMAGENET_STD})"
# The ResNet recipe (He et al. 2015 as torchvision trains it): random-resized crops and flips for
# training, resized without antialiasing as the Flax example and big_vision do (antialias=True
# resamples as torchvision does, at about half the speed); the shorter side resized to 256
# and the central 224 crop for evaluation.
def resnet_pp(crop: int = 224, resize: int = 256, normalize: str = IMAGENET_NORMALIZE) -> tuple[str, str]:
  """The (train, eval) specs of that recipe at any size: torchvision's reference script's too."""
  return (f"decode_and_inception_crop({crop}, antialias=False)|flip_lr|{normalize}",
          f"decode(3)|resize_small({resize})|center_crop({crop})|{normalize}")


RESNET_PP_TRAIN, RESNET_PP_EVAL = resnet_pp()


# The papers that subtracted the mean pixel from 0-255 values: the same mean on that scale.
IMAGENET_SUBTRACT_MEAN = f"subtract_mean({tuple(round(255 * m, 3) for m in IMAGENET_MEAN)})"

# The (train, eval) splits of the tfds datasets the project documents; "" for none (imagenet_v2
# is an evaluation set for models trained on imagenet2012).
TFDS_SPLITS = {
    "imagenet2012": ("train", "validation"),
    "imagenet_v2": ("", "test"),
    "imagenet_resized/32x32": ("train", "validation"),
    "imagenet_resized/64x64": ("train", "validation"),
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "mnist": ("train", "test"),
    "fashion_mnist": ("train", "test"),
    "fashion_mnist_local": ("train", "test"),
}


def tfds_data(name: str, pp_train: str, pp_eval: str, data_dir: str | None = None) -> ml_collections.ConfigDict:
  """A data block for a tfds dataset with its usual splits."""
  d = data_config()
  d.name = name
  d.train_split, d.eval_split = TFDS_SPLITS.get(name, ("train", "test"))
  d.pp_train, d.pp_eval = pp_train, pp_eval
  if data_dir:
    d.data_dir = data_dir
  return d


def imagenet_data(pp_train: str = RESNET_PP_TRAIN, pp_eval: str = RESNET_PP_EVAL) -> ml_collections.ConfigDict:
  """ILSVRC2012 through tfds's imagenet2012 builder (`python -m imagenet_train prepare` first)."""
  return tfds_data("imagenet2012", pp_train, pp_eval)


def torchvision_recipe(c: ml_collections.ConfigDict, learning_rate: float = 0.1, crop: int = 224, resize: int = 256,
                       normalize: str = IMAGENET_NORMALIZE) -> ml_collections.ConfigDict:
  """torchvision's classification reference script with its defaults (`train.py --model M --lr
  LR`): SGD with momentum 0.9 on batches of 256 (32 on each of 8 GPUs), weight decay 1e-4 added
  to every weight's gradient, 90 epochs with the rate divided by 10 at 30 and 60, the ResNet
  recipe's augmentation, and one center crop for evaluation."""
  c.data = imagenet_data(*resnet_pp(crop, resize, normalize))
  c.batch_size = 256
  c.num_epochs = 90.0
  c.learning_rate = learning_rate
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_mode = "l2"
  c.schedule.name = "steps"
  c.schedule.boundaries_epochs = (30, 60)
  c.schedule.decay_factor = 0.1
  c.evaluation.protocol = "center"
  c.evaluation.resize, c.evaluation.crop = resize, crop
  return c


def torchvision_errors(p: ml_collections.ConfigDict, acc1: float, acc5: float) -> None:
  """A paper block's single-model errors from torchvision's weights metadata: its acc@1 and
  acc@5 (in %) on the ImageNet validation set, one center crop of the image resized to 256."""
  p.protocol, p.split = "center", "val"
  p.top1, p.top5 = round(100 - acc1, 3), round(100 - acc5, 3)


# Pixels scaled to [-1, 1], as TF-slim's inception_preprocessing does (and the weights
# torchvision ported from TensorFlow expect).
INCEPTION_NORMALIZE = "normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))"


def inception_recipe(c: ml_collections.ConfigDict, *, size: int, epochs: float,
                     grad_clip_norm: float = 0.0) -> ml_collections.ConfigDict:
  """The Inception-v3 paper's recipe, which the Inception-v4 paper reuses, synchronous at batch
  256 (each config's docstring says where it departs from the paper): RMSProp with decay 0.9,
  epsilon 1.0 and momentum 0.9 (TF-slim's), learning rate 0.165 per 256 images (Google's TPU
  reference) decayed by 0.94 every 2 epochs, weight decay 4e-5, label smoothing 0.1, an
  exponential moving average of the parameters (0.9999) for evaluation; TF-slim's
  inception_preprocessing (crops of 5-100% of the area, flips, colour distortions, [-1, 1]
  pixels) at `size`, evaluated on the central 87.5%."""
  c.data = imagenet_data(
      f"decode_and_inception_crop({size}, area=(0.05, 1.0))|flip_lr|color_jitter(0.125, 0.5, 0.5, 0.2)|"
      f"{INCEPTION_NORMALIZE}",
      f"decode_and_center_crop({size}, crop_fraction=0.875)|{INCEPTION_NORMALIZE}")
  c.batch_size = 256
  c.learning_rate = 0.165 * c.batch_size / 256
  c.optimizer.name = "rmsprop"
  c.optimizer.rms_decay = 0.9
  c.optimizer.eps = 1.0
  c.optimizer.momentum = 0.9
  c.optimizer.grad_clip_norm = grad_clip_norm
  c.optimizer.weight_decay = 4e-5
  c.optimizer.weight_decay_mode = "l2"
  c.num_epochs = epochs
  c.schedule.name = "exponential"
  c.schedule.decay_every_epochs = 2.0
  c.schedule.decay_factor = 0.94
  c.label_smoothing = 0.1
  c.averaging.ema_decay = 0.9999
  c.evaluation.protocol = "center"
  c.evaluation.resize, c.evaluation.crop = 342, 299  # torchvision's 299 of 342: the same central 87.5%
  c.evaluation.googlenet_scales = (342, 384, 427, 470)  # GoogLeNet's 256-352 scaled to the 299 crop
  return c


FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.286, 0.353


def fashion_mnist_data(train_ops: str = "flip_lr") -> ml_collections.ConfigDict:
  """Fashion-MNIST from Debian's IDX files through the project's tfds builder."""
  normalize = f"normalize(mean={FASHION_MNIST_MEAN}, std={FASHION_MNIST_STD})"
  d = tfds_data("fashion_mnist_local", f"decode(1)|{train_ops}|{normalize}", f"decode(1)|{normalize}")
  d.manual_dir = "/usr/share/datasets/fashion-mnist"
  d.shuffle_buffer = 60_000
  d.cache_raw = True  # 60,000 small PNGs: about 25 MB
  return d


def fashion_mnist_recipe(c: ml_collections.ConfigDict, *, learning_rate: float, epochs: float,
                         warmup_epochs: float, full: bool = False,
                         train_ops: str = "flip_lr") -> ml_collections.ConfigDict:
  """The Fashion-MNIST track's shared recipe: SGD with Nesterov momentum 0.9 on batches of 128,
  a linear warm-up then cosine decay, weight decay 5e-4 on every weight, an evaluation of the
  10,000 test images (one view) every epoch; fp32 on a CPU, bf16 at `full` width for an
  accelerator. The paper block's source is the Fashion-MNIST README's benchmark table: each
  config adds its row."""
  c.dtype = "bfloat16" if full else "float32"  # bf16 buys nothing on a CPU
  c.data = fashion_mnist_data(train_ops)
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = epochs
  c.learning_rate = learning_rate
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 5e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = warmup_epochs
  c.log_every_steps = 100
  c.eval_every_epochs = 1.0
  c.checkpoint_every_steps = 2000
  p = c.paper
  p.reference = "Fashion-MNIST benchmark, zalandoresearch/fashion-mnist README.md"
  p.protocol = "center"
  p.split = "test"
  return c


# Where the smoke variants read fake ILSVRC2012 data:
#   python -m imagenet_train prepare --dataset=imagenet2012 --fake --manual_dir=workdirs/fake_imagenet/manual \
#       --data_dir=workdirs/fake_imagenet/tfds
SMOKE_MANUAL_DIR, SMOKE_DATA_DIR = "workdirs/fake_imagenet/manual", "workdirs/fake_imagenet/tfds"


def parse_arg(arg: str | None, **spec):
  """A config argument (`configs/x.py:ARG`) as a ConfigDict of `spec`'s keys.

  ARG is comma-separated: `key=value`, a bare boolean key (`smoke`) for True, or a bare value,
  which fills the next non-boolean key in `spec`'s order: `configs/resnet.py:50,v1,smoke` is
  depth=50, version=v1, smoke=True. Values take the type of the key's default.
  """
  from imagenet_train.errors import UserError

  values = dict(spec)
  positional = [key for key, default in spec.items() if not isinstance(default, bool)]
  for token in filter(None, (arg or "").split(",")):
    key, sep, value = token.partition("=")
    if not sep:
      if token in spec and isinstance(spec[token], bool):
        key, value = token, "true"
      elif positional:
        key, value = positional.pop(0), token
      else:
        raise UserError(f"config argument {token!r} is not one of {', '.join(spec)}: pass KEY=VALUE")
    elif key not in spec:
      raise UserError(f"config argument {key!r} is not one of {', '.join(spec)}")
    elif key in positional:
      positional.remove(key)
    default = spec[key]
    if isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise UserError(f"config argument {key}={value} is not a boolean: use true or false")
      values[key] = value.lower() in ("true", "1")
    else:
      try:
        values[key] = type(default)(value)
      except ValueError:
        raise UserError(f"config argument {key}={value} is not a valid {type(default).__name__}") from None
  return ml_collections.ConfigDict(values)


def check_choice(name: str, value, choices) -> None:
  """Refuses a config argument outside `choices`, listing them."""
  from imagenet_train.errors import UserError

  if value not in choices:
    raise UserError(f"config argument {name}={value} is not one of {', '.join(map(str, choices))}")


def make_smoke(c: ml_collections.ConfigDict, **model_options) -> ml_collections.ConfigDict:
  """Turns a recipe into its smoke variant: the same model family, optimizer, schedule and
  pipeline, two steps of 8 images in float32, with `model_options` (narrow widths) added. An
  ImageNet recipe reads fake ILSVRC2012 data (SMOKE_DATA_DIR); a Fashion-MNIST one keeps its
  data and evaluates on the first 64 test images. The caller has already set small image sizes."""
  if c.data.name == "fashion_mnist_local":
    c.data.eval_split = "test[:64]"
  else:
    c.data.name = "imagenet2012"
    c.data.data_dir, c.data.manual_dir = SMOKE_DATA_DIR, SMOKE_MANUAL_DIR
    c.data.train_split, c.data.eval_split = TFDS_SPLITS["imagenet2012"]
  c.data.shuffle_buffer = 64
  c.data.cache_raw = c.data.cache_eval = False
  c.model_options.update(model_options)
  c.dtype = "float32"
  c.batch_size = c.eval_batch_size = 8
  c.num_train_steps = 2
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.keep_checkpoints = 1
  c.async_checkpoints = False
  return c
