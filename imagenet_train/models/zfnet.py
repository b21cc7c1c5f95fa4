"""ZFNet (Zeiler and Fergus, 2013, "Visualizing and Understanding Convolutional Networks", Fig. 3).

AlexNet made denser and finer at the bottom: conv1 has 96 7x7 filters at stride 2 (AlexNet's
11x11 at 4) and conv2 256 5x5 at stride 2, each followed by ReLU, 3x3 stride-2 max pooling and
contrast normalisation across feature maps; conv3, conv4 and conv5 (384, 384, 256, 3x3) are
dense rather than split into two towers; a last 3x3 stride-2 pooling gives 6x6x256, then
FC-4096, FC-4096 (ReLU, dropout 0.5) and the classifier. Weights start from N(0, 0.01)
(the paper's "initialized to 1e-2") and biases from 0.

The paper gives only the map sizes, 110, 55, 26, 13 and 6 at 224. Padding conv1 by 1 on each
side, conv2 by 0, conv3-5 by 1, and pooling in Caffe's ceil mode (a last, partial window
rather than dropping the edge) reproduces all five.

The contrast normalisation is `local_response_norm` with Krizhevsky's constants (n=5, k=2,
alpha=1e-4, beta=0.75): the paper builds on Krizhevsky et al.'s network and names no
constants of its own.

`wide=True` is the paper's variant (b), with conv3, conv4 and conv5 512, 1024 and 512 wide.
Final maps other than 6x6 are pooled to 6x6 adaptively before FC6 (torch's adaptive average
pooling, as in alexnet.py), so the parameters do not depend on the input. The smallest input
is 63x63, where every pooling window still fits in its map and the last map is 1x1. The
paper's renormalisation of filters whose RMS exceeds 0.1 is a training rule, not part of
the model, and is not applied.

`zf_features` and `zf_classifier` are shared with SPP-net's ZF-5 (sppnet.py).
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import check_choice, register
from imagenet_train.models.layers import adaptive_avg_pool, flatten_channel_major, local_response_norm, max_pool_ceil

_paper_init = nn.initializers.normal(0.01)
_MIN_SIZE = 63


def zf_features(x, *, dtype, widths: Sequence[int] = (384, 384, 256), norm_before_pool: bool = False):
  """conv1 to conv5 with their ReLUs, poolings and normalisations: 13x13 maps at 224.

  Call it inside a compact `__call__`: its layers become the caller's conv1 to conv5.
  `norm_before_pool` swaps normalisation and pooling in the first two stages (SPP-net's order).
  """
  conv = functools.partial(nn.Conv, dtype=dtype, kernel_init=_paper_init)
  for name, features, kernel, padding in (("conv1", 96, 7, 1), ("conv2", 256, 5, 0)):
    x = nn.relu(conv(features, (kernel, kernel), 2, padding=padding, name=name)(x))
    if norm_before_pool:
      x = max_pool_ceil(local_response_norm(x), 3, 2)
    else:
      x = local_response_norm(max_pool_ceil(x, 3, 2))
  for index, features in enumerate(widths, start=3):
    x = nn.relu(conv(features, (3, 3), padding=1, name=f"conv{index}")(x))
  return x


def zf_classifier(x, *, num_classes: int, dtype, dropout_rate: float, train: bool):
  """FC6 and FC7 (4096, ReLU, dropout) and the FC8 classifier, on flattened features."""
  dense = functools.partial(nn.Dense, dtype=dtype, kernel_init=_paper_init)
  for name in ("fc6", "fc7"):
    x = nn.Dropout(dropout_rate, deterministic=not train)(nn.relu(dense(4096, name=name)(x)))
  return dense(num_classes, name="fc8")(x)


@register("zfnet", params=62_357_608, multiply_adds=1.17, small=((63, 63, 3), {}))
class ZFNet(nn.Module):
  num_classes: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.5
  wide: bool = False

  def __post_init__(self):
    check_choice("wide", self.wide, (False, True))
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    if min(x.shape[1:3]) < _MIN_SIZE:
      raise ValueError(
        f"ZFNet needs inputs of at least {_MIN_SIZE}x{_MIN_SIZE} (224 native), got {x.shape[1]}x{x.shape[2]}"
      )
    x = zf_features(x, dtype=self.dtype, widths=(512, 1024, 512) if self.wide else (384, 384, 256))
    x = flatten_channel_major(adaptive_avg_pool(max_pool_ceil(x, 3, 2), 6))  # 6x6 at 224: a plain flatten
    return zf_classifier(x, num_classes=self.num_classes, dtype=self.dtype, dropout_rate=self.dropout_rate, train=train)
