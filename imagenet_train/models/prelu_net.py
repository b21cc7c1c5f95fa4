"""PReLU-net model C (He, Zhang, Ren and Sun, 2015, "Delving Deep into Rectifiers: Surpassing
Human-Level Performance on ImageNet Classification", Table 3).

VGG-19 reshaped and widened: a 7x7 stride-2 convolution of 96 filters and a 2x2 stride-2 max
pooling take a 224 input to 56x56; then three stages of six 3x3 convolutions, 384, 768 and 896
wide, on 56x56, 28x28 and 14x14 maps, separated by 2x2 stride-2 max pooling; a spatial pyramid
pooling of {7x7, 3x3, 2x2, 1x1} bins (63 bins, 56,448 features: sppnet.py's
`spatial_pyramid_pool`); FC-4096 and FC-4096 with dropout 0.5 and the classifier. 22 weight
layers, each but the last followed by a channel-wise PReLU whose slopes start at 0.25 (one per
unit after the FC layers). Convolution weights start from N(0, 2/n^) with n^ = k*k*c_out, the
backward-propagation form of the paper's initialisation (its equation 14, conv1 included); the
FC weights from N(0, 0.01^2), N(0, 0.01^2) and N(0, 0.001^2); biases from 0. The pyramid
pools any input to the same length; the smallest input is 16x16, where the last maps are 1x1.
Poolings round up as Caffe does (the paper's code is a Caffe modification), which only matters
for inputs whose maps have odd sides. `width_multiplier` below 1 narrows every layer but the
classifier, only for quick tests.

Checked against the paper's text (arXiv 1502.01852v1):
- Table 3 ("Architectures of large models"), model C column: conv1 "7x7, 96, /2" on the 224
  input, then "2x2 maxpool, /2"; six "3x3, 384" at 56, "2x2 maxpool, /2", six "3x3, 768" at
  28, "2x2 maxpool, /2", six "3x3, 896" at 14; "spp, {7, 3, 2, 1}"; fc1 4096, fc2 4096, fc3
  1000; depth (conv+fc) 22; complexity 5.30 (x10^10 operations). Model B is the same depth at
  256/512/512, model A five convolutions per stage (19 layers, 1.90), VGG-19 1.96.
- Section 2.3: the pyramid has 4 levels of 7x7, 3x3, 2x2 and 1x1 bins, "a total of 63 bins",
  before the first fc layer; C is "a wider (with more filters) version of B".
- Section 2.1: PReLU's a_i is per channel, a_i = 0.25 "as the initialization throughout this
  paper". Section 4 uses "the channel-wise version" for its ReLU/PReLU comparison on model A
  (Table 4).
- Sections 2.2 and 3: the models are trained from scratch with "our initialization described
  in Sec. 2.2 (we use Eqn.(14))", which may be used on the first layer as well; "We also
  initialize b = 0"; and, for the fully connected layers, "a std of 0.01 for the first two fc
  layers and 0.001 for the last", which the paper chose to cope with unnormalised inputs in
  about [-128, 128] (so the configs subtract a mean on the 0..255 scale rather than scaling it).
- Section 3: "Dropout (50%) is used in the first two fc layers."
- This layout counts 5.35e10 multiply-adds at 224x224 (Table 3: 5.30e10; 0.9% apart, the
  FC layers' 0.025e10 being about half the gap); the same code with model B's and A's
  stages counts 2.32e10 and 1.91e10 (Table 3: 2.32 and 1.90).

Not in the paper, so chosen here:
- The convolutions' padding (3 for conv1, 1 for the 3x3 ones, "same" padding): it gives Table
  3's 112/56/28/14 map sizes at a 224 input and keeps the 3x3 stages' sizes unchanged.
- Rounding of partial pooling windows (Caffe's ceil rule).
- PReLU after fc1 and fc2, one slope per unit: the text does not list the large models'
  activations layer by layer; its small model (Table 1), trained "with all ReLUs replaced by
  PReLUs", shows learned coefficients after conv1 to fc2 and none after fc3.
- No parameter count for model C is given; this layout has 330,603,368 weights and biases
  (1000 classes), plus 20,576 PReLU slopes.
- The initialisation for PReLU nets in equation 15 ((1 + a^2)/2 in place of 1/2) is derived
  but the text never says the ImageNet models used it; this follows section 3's "Eqn.(14)".
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import check_range, register
from imagenet_train.models.layers import PReLU, max_pool_ceil, spatial_pyramid_pool

# Per stage after conv1 and its pooling: (width, convolutions), the stages separated by 2x2
# stride-2 pooling (Table 3, model C).
_MODEL_C = ((384, 6), (768, 6), (896, 6))
_MIN_SIZE = 16
_LEVELS = (7, 3, 2, 1)  # Section 2.3
# He et al.'s equation 14: zero mean, variance 2/n^ with n^ = k*k*d the fan-out (Flax's
# "fan_out" of a conv kernel is k*k*c_out).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# Section 2.2: "a std of 0.01 for the first two fc layers and 0.001 for the last".
_FC_STDDEVS = {"fc1": 0.01, "fc2": 0.01, "fc3": 0.001}


class PReLUNet(nn.Module):
  num_classes: int
  stages: Sequence[tuple[int, int]]
  dtype: Any = jnp.float32
  dropout_rate: float = 0.5
  width_multiplier: float = 1.0

  def __post_init__(self):
    check_range("width_multiplier", self.width_multiplier, low_open=True)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    if min(x.shape[1:3]) < _MIN_SIZE:
      raise ValueError(
        f"PReLU-net needs inputs of at least {_MIN_SIZE}x{_MIN_SIZE} (224 native), got {x.shape[1]}x{x.shape[2]}"
      )
    width = lambda features: max(1, int(features * self.width_multiplier))
    conv = functools.partial(nn.Conv, dtype=self.dtype, kernel_init=_conv_init)
    x = PReLU(name="prelu1")(conv(width(96), (7, 7), 2, padding=3, name="conv1")(x))
    for stage, (features, depth) in enumerate(self.stages, start=2):
      x = max_pool_ceil(x, 2, 2)
      for index in range(1, depth + 1):
        x = conv(width(features), (3, 3), padding=1, name=f"conv{stage}_{index}")(x)
        x = PReLU(name=f"prelu{stage}_{index}")(x)
    x = spatial_pyramid_pool(x, _LEVELS)

    def dense(features, name):
      return nn.Dense(features, dtype=self.dtype, name=name, kernel_init=nn.initializers.normal(_FC_STDDEVS[name]))

    for name in ("fc1", "fc2"):
      x = PReLU(name=f"prelu_{name}")(dense(width(4096), name)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return dense(self.num_classes, "fc3")(x)


# Counted from this implementation (no stored source gives model C's parameters); its
# multiply-adds agree with the paper's complexity row: He et al. 2015, Table 3 (arXiv v1 text),
# model C, 5.30e10.
register("prelu_net_c", params=330_623_944, multiply_adds=53.0, small=((32, 32, 3), {"width_multiplier": 1 / 16}))(
  functools.partial(PReLUNet, stages=_MODEL_C)
)
