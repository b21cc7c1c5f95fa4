"""Preprocessing ops, found by name and composed by a config into one pipeline spec.

A spec reads like `"decode|random_crop(28, pad=4)|flip_lr|normalize(mean=0.286, std=0.353)"`:
ops separated by `|`, each a name with literal arguments. Every op maps a features dict to a
features dict and receives its own stateless seed, derived by the pipeline from the config seed,
the epoch and the example's index, so a batch never depends on thread counts or prefetch depth.
"""

import ast
from typing import Callable

import tensorflow as tf

from imagenet_train.errors import UserError

Op = Callable[[dict, tf.Tensor], dict]
_OPS: dict[str, Callable[..., Op]] = {}


def register(name: str):
  def add(factory):
    _OPS[name] = factory
    return factory

  return add


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


def parse(spec: str) -> Callable[[dict, tf.Tensor], dict]:
  """Builds one function applying every op of `spec` in order."""
  ops = []
  for part in spec.split("|"):
    name, args, kwargs = _parse_call(part)
    if name not in _OPS:
      raise UserError(f"unknown preprocessing op {name!r} in {spec!r}; known ops: {', '.join(sorted(_OPS))}")
    try:
      ops.append(_OPS[name](*args, **kwargs))
    except TypeError as error:
      raise UserError(f"bad arguments for preprocessing op {part.strip()!r}: {error}") from None

  def apply(features: dict, seed: tf.Tensor) -> dict:
    for index, op in enumerate(ops):
      features = op(features, tf.random.experimental.stateless_fold_in(seed, index))
    return features

  return apply


@register("decode")
def decode(channels: int = 0):
  """Decodes the encoded `image` (JPEG, PNG, ...) into uint8 HWC."""

  def op(features, seed):
    del seed
    image = tf.io.decode_image(features["image"], channels=channels, expand_animations=False)
    return {**features, "image": image}

  return op


@register("random_crop")
def random_crop(size: int, pad: int = 0):
  """Zero-pads by `pad` pixels on each side, then crops a random `size`x`size` window."""

  def op(features, seed):
    image = features["image"]
    if pad:
      image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    channels = tf.shape(image)[-1]
    image = tf.image.stateless_random_crop(image, tf.stack([size, size, channels]), seed=seed)
    return {**features, "image": image}

  return op


@register("flip_lr")
def flip_lr():
  """Flips the image left-right with probability one half."""

  def op(features, seed):
    return {**features, "image": tf.image.stateless_random_flip_left_right(features["image"], seed=seed)}

  return op


@register("resize")
def resize(size: int, method: str = "bilinear"):
  """Resizes to `size`x`size`, keeping the dtype."""

  def op(features, seed):
    del seed
    image = features["image"]
    resized = tf.image.resize(image, [size, size], method=method, antialias=True)
    return {**features, "image": tf.cast(tf.round(resized), image.dtype) if image.dtype.is_integer else resized}

  return op


@register("normalize")
def normalize(mean=0.0, std=1.0):
  """Scales pixels to [0, 1], then subtracts the per-channel `mean` and divides by `std`."""

  def op(features, seed):
    del seed
    image = tf.cast(features["image"], tf.float32) / 255.0
    return {**features, "image": (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)}

  return op
