"""Layers and conventions that several families share and Flax does not provide.

Pooling as torch and Caffe round it (`max_pool_ceil`, `adaptive_avg_pool`, `spatial_pyramid_pool`),
torch's flattening order (`flatten_channel_major`), normalisations and activations
(`local_response_norm`, `PReLU`, `SqueezeExcitation`), torchvision's `BasicConv` and its
`torch_trunc_normal` initialiser, and the one way a model reports auxiliary classifiers
(`AuxiliaryClassifiers`, `sow_aux_logits`), which `models.train_forward` reads.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# The collection auxiliary classifiers sow their logits into; only `sow_aux_logits` writes it and
# only `models.train_forward` reads it.
AUX_LOGITS = "aux_logits"


def max_pool_ceil(x, window: int, stride: int):
  """torch's MaxPool2d(window, stride, ceil_mode=True), which is also Caffe's only rounding: a
  partial window at the far (bottom, right) edges makes one more output, so that no input row
  or column is dropped. (torch's rule against windows that start past the edge never applies
  without padding and with window >= stride.)"""
  padding = []
  for side in x.shape[1:3]:
    cells = -(-(side - window) // stride) + 1
    padding.append((0, (cells - 1) * stride + window - side))
  return nn.max_pool(x, (window, window), (stride, stride), padding=padding)


def adaptive_avg_pool(x, size: int):
  """torch's adaptive_avg_pool2d of NHWC maps to size x size: output cell i averages input rows
  (and columns) floor(i * n / size) to ceil((i + 1) * n / size), overlapping or repeating where
  size does not divide n. Averaging rows and then columns equals averaging each rectangle."""
  for axis in (1, 2):
    n = x.shape[axis]
    if n % size == 0:  # equal blocks, or nothing to do: one reduction
      shape = x.shape[:axis] + (size, n // size) + x.shape[axis + 1 :]
      x = x.reshape(shape).mean(axis + 1)
    elif size % n == 0:  # each row repeated
      x = jnp.repeat(x, size // n, axis=axis)
    else:
      cells = [
        jax.lax.slice_in_dim(x, i * n // size, -(-(i + 1) * n // size), axis=axis).mean(axis, keepdims=True)
        for i in range(size)
      ]
      x = jnp.concatenate(cells, axis)
  return x


def flatten_channel_major(x):
  """Flattens NHWC maps in torch's NCHW order, so that torch's Linear weights apply unchanged."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def _bins(size: int, count: int) -> list[tuple[int, int]]:
  """[start, end) of `count` bins along a side of `size`.

  SPP-net's windows are ceil(size/count) wide at a stride of floor(size/count). For some sizes
  that does not make `count` windows (10 rows into 6 bins gives 9, and fewer rows than bins
  none); there the bins are torch's adaptive ones, [floor(i*size/count), ceil((i+1)*size/count)).
  """
  window, stride = -(-size // count), size // count
  if stride and (size - window) // stride + 1 == count:
    return [(i * stride, i * stride + window) for i in range(count)]
  return [(i * size // count, -(-(i + 1) * size // count)) for i in range(count)]


def spatial_pyramid_pool(x, levels: Sequence[int]):
  """He et al. (2014): max-pools NHWC maps into an n x n grid for each n in `levels`, and
  concatenates the grids, each flattened channel-major as Caffe's SPP layer does, into
  (batch, channels * sum(n^2)), whatever the input's size."""
  pooled = []
  for count in levels:
    # A rectangle's maximum is the maximum over its rows of the maximum over its columns.
    rows = jnp.stack([x[:, start:end].max(axis=1) for start, end in _bins(x.shape[1], count)], axis=1)
    grid = jnp.stack([rows[:, :, start:end].max(axis=2) for start, end in _bins(x.shape[2], count)], axis=2)
    pooled.append(flatten_channel_major(grid))
  return jnp.concatenate(pooled, axis=-1)


def local_response_norm(x, *, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, groups: int = 1):
  """Krizhevsky et al.'s cross-channel normalisation, b = a / (k + alpha * sum a^2)^beta.

  The sum runs over `size` adjacent channels centred on each one, as in the AlexNet paper's
  formula (alpha is not divided by `size`, unlike Caffe's). With `groups` > 1 each group of
  channels is normalised on its own, as each of AlexNet's two GPUs normalised its own maps.
  """
  squares = jnp.square(x.astype(jnp.float32))
  *batch_dims, channels = x.shape
  squares = squares.reshape(*batch_dims, groups, channels // groups)
  window = (1,) * (squares.ndim - 1) + (size,)
  padding = ((0, 0),) * (squares.ndim - 1) + ((size // 2, (size - 1) // 2),)
  sums = jax.lax.reduce_window(squares, 0.0, jax.lax.add, window, (1,) * squares.ndim, padding)
  scale = jnp.power(k + alpha * sums.reshape(x.shape), -beta)
  return (x * scale).astype(x.dtype)


class PReLU(nn.Module):
  """He et al. (2015)'s parametric ReLU: a learned slope for negative inputs, per channel
  (their default) or one for the whole layer (`channel_shared`), initialised at 0.25."""

  channel_shared: bool = False

  @nn.compact
  def __call__(self, x):
    shape = () if self.channel_shared else (x.shape[-1],)
    slope = self.param("slope", nn.initializers.constant(0.25), shape, jnp.float32)
    return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


class SqueezeExcitation(nn.Module):
  """Hu et al. (2017): global average pool, FC to C/r, ReLU, FC back to C, sigmoid, rescale."""

  reduction: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2))
    s = nn.relu(nn.Dense(channels // self.reduction, dtype=self.dtype, name="reduce")(s))
    s = nn.sigmoid(nn.Dense(channels, dtype=self.dtype, name="expand")(s))
    return x * s[:, None, None, :]


def torch_trunc_normal(std: float):
  """torch's trunc_normal_(std=std, a=-2, b=2), as torchvision's GoogLeNet and Inception-v3 use
  it: the bounds are absolute, so at these small deviations it is a plain normal in all but name."""
  return nn.initializers.truncated_normal(std, lower=-2.0 / std, upper=2.0 / std)


class BasicConv(nn.Module):
  """torchvision's BasicConv2d: a bias-free convolution ("conv"), BatchNorm ("bn", momentum 0.9
  in Flax's sense) and ReLU. With `epsilon=None` the convolution has a bias and no BatchNorm
  follows (the 2014 networks)."""

  features: int
  kernel_size: int | Sequence[int]
  strides: int = 1
  # As torch's Conv2d: an int, or a (height, width) pair, on both sides; or Flax's "SAME"/"VALID".
  padding: Any = 0
  epsilon: float | None = 1e-3
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    kernel = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
    x = nn.Conv(
      self.features,
      kernel,
      self.strides,
      padding=self.padding,
      use_bias=self.epsilon is None,
      kernel_init=self.kernel_init,
      bias_init=self.bias_init,
      dtype=self.dtype,
      name="conv",
    )(x)
    if self.epsilon is not None:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=self.epsilon, dtype=self.dtype, name="bn")(
        x
      )
    return nn.relu(x)


class AuxiliaryClassifiers:
  """Mixin for a model with auxiliary classifiers (GoogLeNet's aux1 and aux2, Inception-v3's AuxLogits).

  The model (`class GoogLeNet(AuxiliaryClassifiers, nn.Module)`) declares two fields of its own,
  `aux_heads: bool` (False leaves the heads out, parameters included) and `aux_loss_weight:
  float` (the weight of each head's loss in the objective), runs a head only where
  `self.wants_aux(train)`, and each head reports its logits with `sow_aux_logits`.
  `models.train_forward` then returns them as (weight, logits) pairs; evaluation never runs them.
  """

  def wants_aux(self, train: bool) -> bool:
    """Auxiliary classifiers run in training, and at init so that their parameters exist even
    when init runs with train=False; evaluation never pays for them."""
    return self.aux_heads and (train or self.is_initializing())

  def aux_weight(self, head: str) -> float:
    """The weight of auxiliary head `head`'s loss; the same `aux_loss_weight` for every head unless overridden."""
    del head
    return self.aux_loss_weight


def sow_aux_logits(head: nn.Module, logits) -> None:
  """Reports an auxiliary head's logits as (AUX_LOGITS, <head name>, "logits"): Flax refuses a
  variable named like a submodule in the same scope, so the head sows them in its own scope."""
  head.sow(AUX_LOGITS, "logits", logits)
