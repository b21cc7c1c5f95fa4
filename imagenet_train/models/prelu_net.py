"""PReLU-net model C (He, Zhang, Ren and Sun, 2015, "Delving Deep into Rectifiers: Surpassing
Human-Level Performance on ImageNet Classification", Table 3).

VGG-19 reshaped and widened: a 7x7 stride-2 convolution of 96 filters and a 3x3 stride-2 max
pooling take a 224 input to 56x56; then three stages of six 3x3 convolutions, 384, 768 and 896
wide, on 56x56, 28x28 and 14x14 maps, separated by 2x2 stride-2 max pooling; a spatial pyramid
pooling of {7x7, 3x3, 2x2, 1x1} bins (63 bins, 56,448 features: sppnet.py's
`spatial_pyramid_pool`); FC-4096 and FC-4096 with dropout 0.5 and the classifier. 22 weight
layers, each but the last followed by a channel-wise PReLU whose slopes start at 0.25 (one per
unit after the FC layers). Weights start from the paper's initialisation, N(0, 2/n) with n =
k*k*c_in the fan-in (its equation 10, used for the first layer too), biases from 0. The
pyramid pools any input to the same length; the smallest input is 16x16, where the last maps
are 1x1. Poolings round up as Caffe does, which is what makes conv1's 112x112 maps 56x56 under
a 3x3 stride-2 window. `width_multiplier` below 1 narrows every layer but the classifier, only
for quick tests.

What was checked and what was not:
- The layout of the family (conv1 7x7/2 with 96 filters, stages of 3x3 convolutions separated
  by max pooling, three FC layers, PReLU after every layer) agrees with a public
  reimplementation of model A (nutszebra/prelu_net, Chainer: 5+5+5 convolutions of 256, 512
  and 512 after the 96-filter 7x7/2 conv1), which replaces the pyramid by a global average.
- From memory of the paper, not re-checked against its text: model C's widths (384, 768, 896)
  and depth (six convolutions per stage; model B has the same depth at 256, 512, 512), the
  {7, 3, 2, 1} pyramid, and the paper's statement that the deeper layers sit on 56, 28 and 14
  pixel maps. The last is consistent with the complexity row of Table 3 as remembered (in
  multiply-adds: VGG-19 1.96e10, A 1.90e10, B 2.32e10, C 5.30e10): this layout counts 5.35e10
  for C, and the same code with model B's and A's stages 2.32e10 and 1.91e10.
- Not known: pool1's window (3x3 here; a 2x2 window gives the same 56x56 maps and count), and
  the convolutions' padding (1, which keeps the map sizes the complexity row implies).
- No parameter count for model C was found in a stored source; this layout has 330,603,368 weights and
  biases (1000 classes), plus 20,576 PReLU slopes.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import register
from imagenet_train.models.googlenet import max_pool_ceil
from imagenet_train.models.layers import PReLU
from imagenet_train.models.sppnet import spatial_pyramid_pool

# Per stage after conv1: (width, convolutions), the stages separated by 2x2 stride-2 pooling.
_MODEL_C = ((384, 6), (768, 6), (896, 6))
_MIN_SIZE = 16
# He et al.'s equation 10: zero mean, variance 2/n with n the fan-in.
_he_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class PReLUNet(nn.Module):
  num_classes: int
  stages: Sequence[tuple[int, int]]
  dtype: Any = jnp.float32
  dropout_rate: float = 0.5
  levels: Sequence[int] = (7, 3, 2, 1)
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    if min(x.shape[1:3]) < _MIN_SIZE:
      raise ValueError(f"PReLU-net needs inputs of at least {_MIN_SIZE}x{_MIN_SIZE} (224 native), got "
                       f"{x.shape[1]}x{x.shape[2]}")
    width = lambda features: max(1, int(features * self.width_multiplier))
    conv = functools.partial(nn.Conv, dtype=self.dtype, kernel_init=_he_init)
    x = PReLU(name="prelu1")(conv(width(96), (7, 7), 2, padding=3, name="conv1")(x))
    x = max_pool_ceil(x, 3, 2)
    for stage, (features, depth) in enumerate(self.stages, start=2):
      if stage > 2:
        x = max_pool_ceil(x, 2, 2)
      for index in range(1, depth + 1):
        x = conv(width(features), (3, 3), padding=1, name=f"conv{stage}_{index}")(x)
        x = PReLU(name=f"prelu{stage}_{index}")(x)
    x = spatial_pyramid_pool(x, self.levels)
    dense = functools.partial(nn.Dense, dtype=self.dtype, kernel_init=_he_init)
    for name in ("fc1", "fc2"):
      x = PReLU(name=f"prelu_{name}")(dense(width(4096), name=name)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return dense(self.num_classes, name="fc3")(x)


@register("prelu_net_c")
def prelu_net_c(*, num_classes: int, dtype=jnp.float32, dropout_rate: float = 0.5,
                width_multiplier: float = 1.0) -> nn.Module:
  if width_multiplier <= 0:
    raise TypeError(f"width_multiplier must be positive, not {width_multiplier!r}")
  return PReLUNet(num_classes=num_classes, stages=_MODEL_C, dtype=dtype, dropout_rate=dropout_rate,
                  width_multiplier=width_multiplier)
