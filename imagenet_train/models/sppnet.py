"""SPP-net (He, Zhang, Ren and Sun, 2014, "Spatial Pyramid Pooling in Deep Convolutional Networks
for Visual Recognition"): the ZF-5 model with a spatial pyramid pooling layer.

ZF-5 is Zeiler and Fergus's five convolutions (zfnet.py's `zf_features`, same paddings and
ceil-mode pooling) with SPP-net's order in the first two stages: conv, ReLU, normalisation,
then pooling. Instead of the last pooling, the conv5 maps are max-pooled into a pyramid of
6x6, 3x3, 2x2 and 1x1 bins, a fixed-length 12,800-vector whatever the input size, followed by
FC-4096, FC-4096 (ReLU, dropout 0.5) and the classifier. At 224 (13x13 conv5 maps) the 6x6
level is exactly ZFNet's 3x3 stride-2 pooling. Normalisation, initialisation and the FC
layers are ZFNet's.

Bins follow the paper, windows ceil(a/n) wide at a stride of floor(a/n) on an a x a map,
wherever that makes n bins (a = 13 at 224); where it does not (a = 10 at 180: 9 bins for the
6x6 level) they fall back to torch's adaptive bins, so the output never changes size. Training
at several sizes (the paper's 180 and 224) is a matter for the input pipeline.

The smallest input is 39x39, where conv5's map is 1x1.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import register
from imagenet_train.models.zfnet import zf_classifier, zf_features

_MIN_SIZE = 39


def _bins(size: int, count: int) -> list[tuple[int, int]]:
  """[start, end) of `count` bins along a side of `size`.

  The paper's windows are ceil(size/count) wide at a stride of floor(size/count). For some
  sizes that does not make `count` windows (10 rows into 6 bins gives 9, and fewer rows than
  bins none); there the bins are torch's adaptive ones, [floor(i*size/count), ceil((i+1)*size/count)).
  """
  window, stride = -(-size // count), size // count
  if stride and (size - window) // stride + 1 == count:
    return [(i * stride, i * stride + window) for i in range(count)]
  return [(i * size // count, -(-(i + 1) * size // count)) for i in range(count)]


def spatial_pyramid_pool(x, levels: Sequence[int] = (6, 3, 2, 1)):
  """Max-pools NHWC maps into an n x n grid for each n in `levels`, and concatenates the grids,
  each flattened channel-major as Caffe's SPP layer does, into (batch, channels * sum(n^2))."""
  pooled = []
  for count in levels:
    # A rectangle's maximum is the maximum over its rows of the maximum over its columns.
    rows = jnp.stack([x[:, start:end].max(axis=1) for start, end in _bins(x.shape[1], count)], axis=1)
    grid = jnp.stack([rows[:, :, start:end].max(axis=2) for start, end in _bins(x.shape[2], count)], axis=2)
    pooled.append(jnp.transpose(grid, (0, 3, 1, 2)).reshape(x.shape[0], -1))
  return jnp.concatenate(pooled, axis=-1)


class SPPNet(nn.Module):
  num_classes: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.5
  levels: Sequence[int] = (6, 3, 2, 1)

  @nn.compact
  def __call__(self, x, *, train: bool):
    if min(x.shape[1:3]) < _MIN_SIZE:
      raise ValueError(f"SPP-net needs inputs of at least {_MIN_SIZE}x{_MIN_SIZE} (224 native), got "
                       f"{x.shape[1]}x{x.shape[2]}")
    x = spatial_pyramid_pool(zf_features(x, dtype=self.dtype, norm_before_pool=True), self.levels)
    return zf_classifier(x, num_classes=self.num_classes, dtype=self.dtype, dropout_rate=self.dropout_rate,
                         train=train)


@register("sppnet")
def sppnet(*, num_classes: int, dtype=jnp.float32, dropout_rate: float = 0.5) -> nn.Module:
  return SPPNet(num_classes=num_classes, dtype=dtype, dropout_rate=dropout_rate)
