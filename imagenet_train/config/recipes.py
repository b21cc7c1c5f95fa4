"""The recipes several configs share: datasets and their splits, pipelines, normalisation, whole training recipes."""

import ml_collections

from imagenet_train.config.schema import data_config

# ImageNet's per-channel mean and standard deviation on the [0, 1] scale (torchvision's figures).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_NORMALIZE = f"normalize(mean={IMAGENET_MEAN}, std={IMAGENET_STD})"
# The papers that subtracted the mean pixel from 0-255 values: the same mean on that scale.
IMAGENET_SUBTRACT_MEAN = f"subtract_mean({tuple(round(255 * m, 3) for m in IMAGENET_MEAN)})"
# Pixels scaled to [-1, 1], as TF-slim's inception_preprocessing does (and the weights
# torchvision ported from TensorFlow expect).
INCEPTION_NORMALIZE = "normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))"
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.286, 0.353


# The ResNet recipe (He et al. 2015 as torchvision trains it): random-resized crops and flips for
# training, resized without antialiasing as the Flax example and big_vision do (antialias=True
# resamples as torchvision does, at about half the speed); the shorter side resized to 256
# and the central 224 crop for evaluation.
def resnet_pp(crop: int = 224, resize: int = 256, normalize: str = IMAGENET_NORMALIZE) -> tuple[str, str]:
  """The (train, eval) specs of that recipe at any size: torchvision's reference script's too."""
  return (
    f"decode_and_inception_crop({crop}, antialias=False)|flip_lr|{normalize}",
    f"decode(3)|resize_small({resize})|center_crop({crop})|{normalize}",
  )


RESNET_PP_TRAIN, RESNET_PP_EVAL = resnet_pp()

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


def fashion_mnist_data(train_ops: str = "flip_lr") -> ml_collections.ConfigDict:
  """Fashion-MNIST from Debian's IDX files through the project's tfds builder."""
  normalize = f"normalize(mean={FASHION_MNIST_MEAN}, std={FASHION_MNIST_STD})"
  d = tfds_data("fashion_mnist_local", f"decode(1)|{train_ops}|{normalize}", f"decode(1)|{normalize}")
  d.manual_dir = "/usr/share/datasets/fashion-mnist"
  d.shuffle_buffer = 60_000
  d.cache_raw = True  # 60,000 small PNGs: about 25 MB
  return d


def torchvision_recipe(
  c: ml_collections.ConfigDict,
  learning_rate: float = 0.1,
  crop: int = 224,
  resize: int = 256,
  normalize: str = IMAGENET_NORMALIZE,
) -> ml_collections.ConfigDict:
  """torchvision's classification reference script with its defaults (`train.py --model M --lr
  LR`): SGD with momentum 0.9 on batches of 256 (32 on each of 8 GPUs), weight decay 1e-4 added
  to every weight's gradient, 90 epochs with the rate divided by 10 at 30 and 60, the ResNet
  recipe's augmentation, and one center crop for evaluation."""
  c.data = imagenet_data(*resnet_pp(crop, resize, normalize))
  c.batch_size = 256
  c.num_epochs = 90.0
  c.learning_rate = learning_rate
  c.optimizer.name = "sgd"
  c.optimizer.sgd.momentum = 0.9
  c.optimizer.sgd.nesterov = False
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


def inception_recipe(
  c: ml_collections.ConfigDict, *, size: int, epochs: float, grad_clip_norm: float = 0.0
) -> ml_collections.ConfigDict:
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
    f"decode_and_center_crop({size}, crop_fraction=0.875)|{INCEPTION_NORMALIZE}",
  )
  c.batch_size = 256
  c.learning_rate = 0.165 * c.batch_size / 256
  c.optimizer.name = "rmsprop"
  c.optimizer.rmsprop.decay = 0.9
  c.optimizer.rmsprop.eps = 1.0
  c.optimizer.rmsprop.momentum = 0.9
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


def fashion_mnist_recipe(
  c: ml_collections.ConfigDict,
  *,
  learning_rate: float,
  epochs: float,
  warmup_epochs: float,
  full: bool = False,
  train_ops: str = "flip_lr",
) -> ml_collections.ConfigDict:
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
  c.optimizer.sgd.nesterov = True
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
