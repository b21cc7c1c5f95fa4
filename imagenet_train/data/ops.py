"""Preprocessing ops, found by name and composed by a config into one pipeline spec.

A spec reads like `"decode|random_crop(28, pad=4)|flip_lr|normalize(mean=0.286, std=0.353)"`:
ops separated by `|`, each a name with literal arguments. Every op maps a features dict to a
features dict and receives its own stateless seed, derived by the pipeline from the config seed,
the epoch and the example's index, so a batch never depends on thread counts or prefetch depth.

Images are uint8 HWC once decoded; ops that compute in float return float32 on the same 0..255
scale. Multi-view evaluation ops return [views, H, W, C], which the element-wise ops accept too.
Ops that set or need a size declare it, so that `parse` rejects a crop larger than the image
an earlier op leaves; crops whose input size is only known at run time assert it there.

Every op that resizes takes `method` (tf.image.resize's) and `antialias`: True, the default,
low-pass filters when shrinking as PIL and torchvision do; False takes TensorFlow's plain,
faster kernel, as the Flax ImageNet example and big_vision do for their training crops.

Each argument's annotation carries its rule (`imagenet_train.rules`), which `parse` checks before it builds
anything; ops whose arguments must match the dataset (normalize's channels, onehot's classes) declare them, for
the pipeline to compare with the dataset it opens.
"""

import ast
import dataclasses
import inspect
from collections.abc import Callable
from typing import Annotated

import numpy as np
import tensorflow as tf

from imagenet_train import rules
from imagenet_train.errors import UserError

Op = Callable[[dict, tf.Tensor], dict]

# The argument types of the ops, each with its rule.
Size = Annotated[int, rules.POSITIVE_WHOLE]
Pixels = Annotated[int, rules.COUNT]
# tf.image.ResizeMethod is a plain class of string constants, not an Enum.
_RESIZE_METHODS = tuple(value for name, value in vars(tf.image.ResizeMethod).items() if name.isupper())
Method = Annotated[str, rules.OneOf(_RESIZE_METHODS)]
Switch = Annotated[bool, rules.Boolean()]
Amount = Annotated[float, rules.NON_NEGATIVE]
Fraction = Annotated[float, rules.FACTOR]
Sizes = Annotated[tuple, rules.Each(rules.POSITIVE_WHOLE, nonempty=True)]
Interval = Annotated[tuple, rules.Each(rules.POSITIVE, nonempty=True)]  # (low, high), each > 0
Channels = Annotated[int, rules.OneOf((0, 1, 3, 4))]  # decode's: 0 keeps the file's
PerChannel = Annotated[float | tuple, rules.OneOrEach(rules.Number())]
PositivePerChannel = Annotated[float | tuple, rules.OneOrEach(rules.POSITIVE)]

# What an op changes, declared where it is registered: evaluation protocols replace an eval
# spec's geometry with their own views and keep its decode and its final value and label ops.
DECODE = "decode"  # encoded bytes to pixels, nothing else
GEOMETRY = "geometry"  # which pixels, and where: crops, resizes, flips (decode_and_* ops decode a window)
COLOUR = "colour"  # pixel values, randomly: augmentation
VALUE = "value"  # pixel values, deterministically: normalisation, mean subtraction
LABEL = "label"  # the label, not the image
KINDS = (DECODE, GEOMETRY, COLOUR, VALUE, LABEL)


@dataclasses.dataclass(frozen=True)
class _Registered:
  factory: Callable[..., Op]
  kind: str


_OPS: dict[str, _Registered] = {}


@dataclasses.dataclass(frozen=True)
class Call:
  """One op of a spec as written: `text` is `name(args, key=value)`."""

  text: str
  name: str
  args: tuple
  kwargs: dict

  @property
  def kind(self) -> str:
    return _OPS[self.name].kind


def register(name: str, kind: str):
  if kind not in KINDS:
    raise ValueError(f"op {name!r}: kind {kind!r} is not one of {KINDS}")

  def add(factory):
    _OPS[name] = _Registered(factory, kind)
    return factory

  return add


def _channels(*values) -> int | None:
  """The channel count per-channel values imply: the length of the ones given per channel, None for scalars."""
  lengths = {len(value) for value in values if isinstance(value, (tuple, list))}
  if len(lengths) > 1:
    raise UserError(f"per-channel values {values} differ in length: give each as many values as the images have")
  return lengths.pop() if lengths else None


def _check_arguments(call: "Call", factory) -> None:
  """Refuses an argument its annotation's rule rejects, naming the op, the argument and what it must be."""
  try:
    bound = inspect.signature(factory).bind(*call.args, **call.kwargs)
  except TypeError as error:
    raise UserError(f"bad arguments for preprocessing op {call.text!r}: {error}") from None
  bound.apply_defaults()
  for name, value in bound.arguments.items():
    for rule in getattr(inspect.signature(factory).parameters[name].annotation, "__metadata__", ()):
      if (must_be := rule.problem(value)) is not None:
        raise UserError(f"bad arguments for preprocessing op {call.text!r}: {name}={value!r} is not {must_be}")


def _sized(op: Op, leaves: int | None, needs: int = 0) -> Op:
  """Declares the shorter side `op` leaves (None: known only at run time) and the side it needs, for `parse`."""
  op.leaves, op.needs = leaves, needs
  return op


def _parse_call(text: str):
  try:
    node = ast.parse(text.strip(), mode="eval").body
    if isinstance(node, ast.Name):
      return node.id, (), {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
      args = tuple(ast.literal_eval(arg) for arg in node.args)
      kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
      return node.func.id, args, kwargs
  except (SyntaxError, ValueError):
    pass
  raise UserError(f"cannot parse preprocessing op {text.strip()!r}: write name or name(literal, key=literal)")


def calls(spec: str) -> list[Call]:
  """The ops of `spec` in order, each known to the registry."""
  result = []
  for part in spec.split("|"):
    name, args, kwargs = _parse_call(part)
    if name not in _OPS:
      raise UserError(f"unknown preprocessing op {name!r} in {spec!r}; known ops: {', '.join(sorted(_OPS))}")
    result.append(Call(part.strip(), name, args, kwargs))
  return result


def join(ops: list[Call]) -> str:
  return "|".join(call.text for call in ops)


def parse(spec: str) -> Callable[[dict, tf.Tensor], dict]:
  """Builds one function applying every op of `spec` in order, rejecting crops larger than a known image size."""
  ops = []
  side, source = None, None
  for call in calls(spec):
    factory = _OPS[call.name].factory
    _check_arguments(call, factory)
    op = factory(*call.args, **call.kwargs)
    if side is not None and getattr(op, "needs", 0) > side:
      raise UserError(
        f"{call.text} is larger than the {side}-pixel shorter side that {source} leaves: "
        f"crop at most {side}, or resize to at least {op.needs}"
      )
    # An op that declares nothing keeps the image size.
    if hasattr(op, "leaves"):
      side, source = op.leaves, call.text
    ops.append(op)

  def apply(features: dict, seed: tf.Tensor) -> dict:
    for index, op in enumerate(ops):
      features = op(features, tf.random.experimental.stateless_fold_in(seed, index))
    return features

  # What the spec needs of the dataset: the images' channel count and the class count, where ops declare them.
  apply.channels = next((op.channels for op in reversed(ops) if getattr(op, "channels", None)), None)
  apply.classes = next((op.classes for op in reversed(ops) if getattr(op, "classes", None)), None)
  return apply


def _resize(image: tf.Tensor, size, method: str, antialias: bool = True) -> tf.Tensor:
  """Resizes to `size`, low-pass filtering when shrinking (as PIL and torchvision do) unless told not to.

  The filter only acts when shrinking, so enlargements take TensorFlow's much faster plain kernel."""
  if antialias:
    shrinks = tf.reduce_any(tf.shape(image)[-3:-1] > tf.convert_to_tensor(size, tf.int32))
    resized = tf.cond(
      shrinks,
      lambda: tf.image.resize(image, size, method=method, antialias=True),
      lambda: tf.image.resize(image, size, method=method),
    )
  else:
    resized = tf.image.resize(image, size, method=method)
  # Bicubic and Lanczos overshoot, so integer images are clipped to their range, not wrapped.
  return tf.saturate_cast(tf.round(resized), image.dtype) if image.dtype.is_integer else resized


def _resize_small(image: tf.Tensor, size, multiple: int, method: str, antialias: bool = True) -> tf.Tensor:
  shape = tf.cast(tf.shape(image), tf.float32)
  height, width = shape[-3], shape[-2]
  longer = tf.round(tf.maximum(height, width) * tf.cast(size, tf.float32) / tf.minimum(height, width) / multiple)
  # Never below `size`, so that `size` stays the shorter side whatever `multiple` is.
  longer = tf.maximum(tf.cast(longer, tf.int32) * multiple, size)
  target = tf.where(height <= width, tf.stack([size, longer]), tf.stack([longer, size]))
  return _resize(image, target, method, antialias)


def _crop(image: tf.Tensor, y, x, height, width) -> tf.Tensor:
  # tf.slice, unlike indexing, keeps a Python int height and width in the static shape; the
  # channel count is passed on as well when known, or -1 would make it unknown.
  channels = image.shape[-1] if image.shape[-1] is not None else -1
  return tf.slice(image, tf.stack([y, x, 0]), tf.stack([height, width, channels]))


def _check_fits(image: tf.Tensor, size: int, op_name: str) -> tf.Tensor:
  """`image`, failing at run time with a message naming both sizes when a `size` crop does not fit it."""
  shape = tf.shape(image)
  message = tf.strings.format(
    op_name + " cannot crop {}x{} from a {}x{} image: resize it to at least {} first",
    (size, size, shape[-3], shape[-2], size),
  )
  with tf.control_dependencies([tf.debugging.Assert(tf.reduce_all(shape[-3:-1] >= size), [message])]):
    return tf.identity(image)


def _five_crops(image: tf.Tensor, size: int) -> tf.Tensor:
  """The center, top-left, top-right, bottom-left and bottom-right `size`x`size` crops, stacked."""
  shape = tf.shape(image)
  bottom, right = shape[0] - size, shape[1] - size
  corners = [(bottom // 2, right // 2), (0, 0), (0, right), (bottom, 0), (bottom, right)]
  return tf.stack([_crop(image, y, x, size, size) for y, x in corners])


def _with_mirrors(views: tf.Tensor) -> tf.Tensor:
  return tf.concat([views, tf.reverse(views, axis=[2])], 0)


def _grid_crops(image: tf.Tensor, size: int, grid: int, flips: bool) -> tf.Tensor:
  shape = tf.shape(image)
  ys, xs = (
    tf.cast(tf.round(tf.linspace(0.0, tf.cast(shape[axis] - size, tf.float32), grid)), tf.int32) for axis in (0, 1)
  )
  views = tf.stack([_crop(image, ys[i], xs[j], size, size) for i in range(grid) for j in range(grid)])
  return _with_mirrors(views) if flips else views


def _inception_window(shape: tf.Tensor, seed: tf.Tensor, area, aspect) -> tf.Tensor:
  """[y, x, height, width] of a random window of the image of HWC `shape`, as in Inception's training."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
    shape,
    tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
    seed=seed,
    min_object_covered=0.0,
    aspect_ratio_range=aspect,
    area_range=area,
    max_attempts=10,
    use_image_if_no_bounding_boxes=True,
  )
  return tf.concat([begin[:2], size[:2]], 0)


def _center_window(shape: tf.Tensor, crop_fraction: float) -> tf.Tensor:
  side = tf.cast(crop_fraction * tf.cast(tf.minimum(shape[0], shape[1]), tf.float32), tf.int32)
  return tf.stack([(shape[0] - side + 1) // 2, (shape[1] - side + 1) // 2, side, side])


def _crop_window(image: tf.Tensor, window: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
  y, x, height, width = tf.unstack(window(tf.shape(image)))
  return _crop(image, y, x, height, width)


def _decode_window(encoded: tf.Tensor, window: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
  """Decodes the `window(shape)` part of an encoded image into uint8 RGB, decoding only that part of a JPEG."""

  def jpeg():
    return tf.image.decode_and_crop_jpeg(encoded, window(tf.image.extract_jpeg_shape(encoded)), channels=3)

  def other():
    return _crop_window(tf.io.decode_image(encoded, channels=3, expand_animations=False), window)

  return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


@register("decode", DECODE)
def decode(channels: Channels = 0):
  """Decodes the encoded `image` (JPEG, PNG, ...) into uint8 HWC."""

  def op(features, seed):
    del seed
    image = tf.io.decode_image(features["image"], channels=channels, expand_animations=False)
    return {**features, "image": image}

  return _sized(op, leaves=None)


@register("decode_and_inception_crop", GEOMETRY)
def decode_and_inception_crop(
  size: Size,
  area: Interval = (0.08, 1.0),
  aspect: Interval = (3 / 4, 4 / 3),
  method: Method = "bilinear",
  antialias: Switch = True,
):
  """Decodes a random window of `area` fraction and `aspect` ratio, resized to `size`x`size`, uint8.

  Inception's random-resized crop (Szegedy et al. 2015), fused with decoding so a JPEG decodes only the window.
  """

  def op(features, seed):
    image = _decode_window(features["image"], lambda shape: _inception_window(shape, seed, area, aspect))
    return {**features, "image": _resize(image, [size, size], method, antialias)}

  return _sized(op, leaves=size)


@register("inception_crop", GEOMETRY)
def inception_crop(
  size: Size,
  area: Interval = (0.08, 1.0),
  aspect: Interval = (3 / 4, 4 / 3),
  method: Method = "bilinear",
  antialias: Switch = True,
):
  """`decode_and_inception_crop` on an already decoded image (Szegedy et al. 2015)."""

  def op(features, seed):
    image = _crop_window(features["image"], lambda shape: _inception_window(shape, seed, area, aspect))
    return {**features, "image": _resize(image, [size, size], method, antialias)}

  return _sized(op, leaves=size)


@register("decode_and_center_crop", GEOMETRY)
def decode_and_center_crop(
  size: Size, crop_fraction: Fraction = 0.875, method: Method = "bilinear", antialias: Switch = True
):
  """Decodes the central square of `crop_fraction` times the shorter side, resized to `size`x`size`.

  Single-crop evaluation (He et al. 2016) the way the TPU ResNet and Flax ImageNet examples do it: 224 of 256.
  """

  def op(features, seed):
    del seed
    image = _decode_window(features["image"], lambda shape: _center_window(shape, crop_fraction))
    return {**features, "image": _resize(image, [size, size], method, antialias)}

  return _sized(op, leaves=size)


@register("resize", GEOMETRY)
def resize(size: Size, method: Method = "bilinear", antialias: Switch = True):
  """Resizes to `size`x`size`, ignoring the aspect and keeping the dtype (Caffe's 256x256 warp, Jia et al. 2014)."""

  def op(features, seed):
    del seed
    return {**features, "image": _resize(features["image"], [size, size], method, antialias)}

  return _sized(op, leaves=size)


@register("resize_small", GEOMETRY)
def resize_small(size: Size, multiple: Size = 1, method: Method = "bilinear", antialias: Switch = True):
  """Resizes the shorter side to `size`, keeping the aspect and the dtype (VGG's and ResNet's test scales).

  With `multiple` > 1 the longer side rounds to the nearest multiple of it (not below `size`), changing the aspect
  slightly so that dense multi-scale evaluation (Simonyan & Zisserman 2014) sees few distinct shapes.
  """

  def op(features, seed):
    del seed
    return {**features, "image": _resize_small(features["image"], size, multiple, method, antialias)}

  return _sized(op, leaves=size)


@register("random_resize_small", GEOMETRY)
def random_resize_small(min_size: Size, max_size: Size, method: Method = "bilinear", antialias: Switch = True):
  """Resizes the shorter side to an integer drawn uniformly from [min_size, max_size], keeping the aspect.

  Scale jittering: VGG trains on [256, 512] (Simonyan & Zisserman 2014), ResNet on [256, 480] (He et al. 2016).
  """
  if min_size > max_size:
    raise UserError(f"random_resize_small({min_size}, {max_size}) needs min_size <= max_size")

  def op(features, seed):
    size = tf.random.stateless_uniform([], seed, min_size, max_size + 1, dtype=tf.int32)
    return {**features, "image": _resize_small(features["image"], size, 1, method, antialias)}

  return _sized(op, leaves=min_size)


@register("center_crop", GEOMETRY)
def center_crop(size: Size):
  """Crops the central `size`x`size` window (single-crop evaluation, e.g. He et al. 2016)."""

  def op(features, seed):
    del seed
    image = _check_fits(features["image"], size, f"center_crop({size})")
    shape = tf.shape(image)
    return {**features, "image": _crop(image, (shape[0] - size) // 2, (shape[1] - size) // 2, size, size)}

  return _sized(op, leaves=size, needs=size)


@register("random_crop", GEOMETRY)
def random_crop(size: Size, pad: Pixels = 0):
  """Zero-pads by `pad` pixels on each side, then crops a random `size`x`size` window.

  AlexNet's random 224 crops of 256 images (Krizhevsky et al. 2012); with `pad`, ResNet's CIFAR-10 augmentation.
  """

  def op(features, seed):
    image = features["image"]
    if pad:
      image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = _check_fits(image, size, f"random_crop({size}, pad={pad})")
    channels = tf.shape(image)[-1]
    image = tf.image.stateless_random_crop(image, tf.stack([size, size, channels]), seed=seed)
    return {**features, "image": image}

  # Padding lets the crop exceed the side before it, which the run-time check covers.
  return _sized(op, leaves=size, needs=0 if pad else size)


@register("flip_lr", GEOMETRY)
def flip_lr():
  """Flips the image left-right with probability one half (Krizhevsky et al. 2012)."""

  def op(features, seed):
    # A cond, not tf.image's stateless flip, which reverses every image and then selects.
    image = features["image"]
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return {**features, "image": tf.cond(flip, lambda: tf.reverse(image, axis=[-2]), lambda: image)}

  return op


# ImageNet's RGB covariance on the [0, 1] scale: eigenvalues, and eigenvectors as columns with rows R, G, B.
_EIGVAL = [0.2175, 0.0188, 0.0045]
_EIGVEC = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]


@register("pca_lighting", COLOUR)
def pca_lighting(sigma: Amount = 0.1):
  """Adds sum_i alpha_i lambda_i p_i, alpha_i ~ N(0, sigma), to every pixel: AlexNet's PCA lighting noise.

  Krizhevsky et al. 2012, section 4.1; float32 out, on the 0..255 scale.
  """

  def op(features, seed):
    alpha = tf.random.stateless_normal([3], seed, stddev=sigma)
    shift = 255.0 * tf.linalg.matvec(tf.constant(_EIGVEC), alpha * tf.constant(_EIGVAL))
    return {**features, "image": tf.cast(features["image"], tf.float32) + shift}

  return op


def _gray(image: tf.Tensor) -> tf.Tensor:
  # torchvision's rgb_to_grayscale weights, so that the factors mean what they mean in ColorJitter.
  return tf.reduce_sum(image * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)


@register("color_jitter", COLOUR)
def color_jitter(
  brightness: Amount = 0.0,
  contrast: Amount = 0.0,
  saturation: Amount = 0.0,
  hue: Annotated[float, rules.Number(0.0, 0.5)] = 0.0,
):
  """torchvision's ColorJitter, always in the order brightness, contrast, saturation, hue (it shuffles the order).

  Howard's (2013) photometric distortions, used to train GoogLeNet (Szegedy et al. 2015); float32 in [0, 255].
  """

  def blend(image, other, amount, seed):
    factor = tf.random.stateless_uniform([], seed, max(0.0, 1.0 - amount), 1.0 + amount)
    return tf.clip_by_value(other + factor * (image - other), 0.0, 255.0)

  def op(features, seed):
    # One seed per distortion, so that turning one on leaves the others' draws unchanged.
    seeds = tf.random.experimental.stateless_split(seed, 4)
    image = tf.cast(features["image"], tf.float32)
    if brightness:
      image = blend(image, 0.0, brightness, seeds[0])
    if contrast:
      image = blend(image, tf.reduce_mean(_gray(image), axis=[-3, -2, -1], keepdims=True), contrast, seeds[1])
    if saturation:
      image = blend(image, _gray(image), saturation, seeds[2])
    if hue:
      image = tf.image.adjust_hue(image, tf.random.stateless_uniform([], seeds[3], -hue, hue))
    return {**features, "image": image}

  return op


@register("normalize", VALUE)
def normalize(mean: PerChannel = 0.0, std: PositivePerChannel = 1.0):
  """Scales pixels to [0, 1], then subtracts the per-channel `mean` and divides by `std` (He et al. 2016)."""

  def op(features, seed):
    del seed
    image = tf.cast(features["image"], tf.float32) / 255.0
    return {**features, "image": (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)}

  op.channels = _channels(mean, std)
  return op


def split_final_normalize(spec: str) -> tuple[str, tuple | None]:
  """`spec` without its final `normalize` op and that op's (mean, std), or (spec, None) if it ends otherwise.

  The pipeline hands that last step to the accelerator, where it is free: the host then skips a float pass over
  every pixel and sends uint8 batches, a quarter of the bytes.
  """
  *head, last = calls(spec)
  if last.name != "normalize" or not head:
    return spec, None
  try:
    bound = inspect.signature(normalize).bind(*last.args, **last.kwargs)
  except TypeError as error:
    raise UserError(f"bad arguments for preprocessing op {last.text!r}: {error}") from None
  bound.apply_defaults()
  return join(head), (bound.arguments["mean"], bound.arguments["std"])


@register("subtract_mean", VALUE)
def subtract_mean(mean: PerChannel):
  """Subtracts a per-channel `mean` in 0..255 pixel units, float32 out (VGG, Simonyan & Zisserman 2014)."""

  def op(features, seed):
    del seed
    return {**features, "image": tf.cast(features["image"], tf.float32) - tf.constant(mean, tf.float32)}

  op.channels = _channels(mean)
  return op


@register("subtract_mean_image", VALUE)
def subtract_mean_image(path: Annotated[str, rules.Text(nonempty=True)]):
  """Subtracts the [H, W, C] mean image of the .npy file `path` (0..255 units), resized to the image if need be.

  AlexNet subtracts the mean 256x256 training image (Krizhevsky et al. 2012); float32 out.
  """
  try:
    mean = np.load(path, allow_pickle=False).astype(np.float32)
  except (OSError, ValueError) as error:
    raise UserError(f"cannot read the mean image {path!r} of subtract_mean_image: {error}") from None
  if mean.ndim != 3:
    raise UserError(
      f"the mean image {path!r} has shape {mean.shape}: subtract_mean_image needs one of shape "
      f"[height, width, channels]"
    )

  def op(features, seed):
    del seed
    image = tf.cast(features["image"], tf.float32)
    size = tf.shape(image)[-3:-1]
    mean_image = tf.constant(mean)
    mean_image = tf.cond(
      tf.reduce_all(size == tf.shape(mean_image)[:2]),
      lambda: mean_image,
      lambda: tf.image.resize(mean_image, size, method="bilinear", antialias=True),
    )
    return {**features, "image": image - mean_image}

  op.channels = mean.shape[-1]
  return op


@register("onehot", LABEL)
def onehot(num_classes: Size, smoothing: Annotated[float, rules.BELOW_ONE] = 0.0):
  """Turns `label` into a float32 one-hot vector, with Inception-v3's label smoothing (Szegedy et al. 2016)."""

  def op(features, seed):
    del seed
    off = smoothing / num_classes
    label = tf.one_hot(features["label"], num_classes, on_value=1.0 - smoothing + off, off_value=off)
    return {**features, "label": label}

  op.classes = num_classes
  return op


@register("ten_crop", GEOMETRY)
def ten_crop(size: Size):
  """The center and four corner `size`x`size` crops, then their mirrors: 10 views (Krizhevsky et al. 2012)."""

  def op(features, seed):
    del seed
    image = _check_fits(features["image"], size, f"ten_crop({size})")
    return {**features, "image": _with_mirrors(_five_crops(image, size))}

  return _sized(op, leaves=size, needs=size)


@register("grid_crops", GEOMETRY)
def grid_crops(size: Size, grid: Size = 5, flips: Switch = True):
  """`grid`x`grid` evenly spaced `size`x`size` crops, row-major, then their mirrors if `flips`.

  The dense crops of VGG's multi-crop evaluation (Simonyan & Zisserman 2014).
  """

  def op(features, seed):
    del seed
    image = _check_fits(features["image"], size, f"grid_crops({size})")
    return {**features, "image": _grid_crops(image, size, grid, flips)}

  return _sized(op, leaves=size, needs=size)


@register("vgg_multi_crop", GEOMETRY)
def vgg_multi_crop(size: Size = 224, scales: Sizes = (256, 384, 512), grid: Size = 5):
  """`grid_crops` with flips at each shorter side in `scales`: 150 views by default (Simonyan & Zisserman 2014)."""
  if min(scales) < size:
    raise UserError(f"vgg_multi_crop needs every scale in {scales} to be at least the crop size {size}")

  def op(features, seed):
    del seed
    image = features["image"]
    views = [_grid_crops(_resize_small(image, scale, 1, "bilinear"), size, grid, True) for scale in scales]
    return {**features, "image": tf.concat(views, 0)}

  return _sized(op, leaves=size)


@register("googlenet_crops", GEOMETRY)
def googlenet_crops(size: Size = 224, scales: Sizes = (256, 288, 320, 352)):
  """GoogLeNet's 144 test views (Szegedy et al. 2014, section 7): 3 squares per scale, 6 views each, and mirrors.

  The squares lie along the longer side; their views are the center and corner crops and the square resized.
  """
  if min(scales) < size:
    raise UserError(f"googlenet_crops needs every scale in {scales} to be at least the crop size {size}")

  def op(features, seed):
    del seed
    views = []
    for scale in scales:
      image = _resize_small(features["image"], scale, 1, "bilinear")
      shape = tf.shape(image)
      landscape = shape[1] >= shape[0]
      longer = tf.maximum(shape[0], shape[1])
      for offset in (0, (longer - scale) // 2, longer - scale):
        square = _crop(image, tf.where(landscape, 0, offset), tf.where(landscape, offset, 0), scale, scale)
        views += [_five_crops(square, size), _resize(square, [size, size], "bilinear")[None]]
    return {**features, "image": _with_mirrors(tf.concat(views, 0))}

  return _sized(op, leaves=size)
