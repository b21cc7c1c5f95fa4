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
6x6 level) they fall back to torch's adaptive bins, so the output never changes size (layers.py's
`spatial_pyramid_pool`, which PReLU-net shares). Training
at several sizes (the paper's 180 and 224) is a matter for the input pipeline.

The smallest input is 39x39, where conv5's map is 1x1.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import register
from imagenet_train.models.layers import spatial_pyramid_pool
from imagenet_train.models.zfnet import zf_classifier, zf_features

_MIN_SIZE = 39
_LEVELS = (6, 3, 2, 1)


# ZFNet's convolutions, then 6x6+3x3+2x2+1x1 bins of 256 maps into FC-4096; its multiply-adds are
# ZFNet's with FC6 reading the pyramid's 50 bins.
@register(
  "sppnet",
  params=62_357_608 + (50 * 256 - 6 * 6 * 256) * 4096,
  multiply_adds=1.17 + (50 * 256 - 6 * 6 * 256) * 4096e-9,
  small=((39, 39, 3), {}),
)
class SPPNet(nn.Module):
  num_classes: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x, *, train: bool):
    if min(x.shape[1:3]) < _MIN_SIZE:
      raise ValueError(
        f"SPP-net needs inputs of at least {_MIN_SIZE}x{_MIN_SIZE} (224 native), got {x.shape[1]}x{x.shape[2]}"
      )
    x = spatial_pyramid_pool(zf_features(x, dtype=self.dtype, norm_before_pool=True), _LEVELS)
    return zf_classifier(x, num_classes=self.num_classes, dtype=self.dtype, dropout_rate=self.dropout_rate, train=train)
