"""OverFeat (Sermanet et al., 2013, "OverFeat: Integrated Recognition, Localization and Detection
using Convolutional Networks"): the fast and accurate classification models of Tables 1 and 3.

No normalisation layers, ReLU after every layer but the last, non-overlapping max pooling.
- `overfeat_fast`, 231x231 input: 96 11x11/4 (no padding) and 2x2 pooling, 256 5x5 (no
  padding) and 2x2 pooling, 512, 1024 and 1024 3x3 (padding 1) and 2x2 pooling to 6x6x1024,
  then FC-3072, FC-4096 and the classifier.
- `overfeat_accurate`, 221x221 input: 96 7x7/2 (no padding) and 3x3 pooling, 256 7x7 (no
  padding) and 2x2 pooling, 512, 512, 1024 and 1024 3x3 (padding 1) and 3x3 pooling to
  5x5x1024, then FC-4096, FC-4096 and the classifier.
Dropout 0.5 follows the two hidden FC layers; weights start from N(0, 0.01), biases from 0.

The FC layers are held as convolutions, the first as wide as the last map at the native input
(6x6 or 5x5), the others 1x1: at the native input this is exactly the FC head, and on a
larger image it is the paper's dense sliding-window evaluation with the same parameters, a map
of class scores reduced, as in the paper's Section 3.3, by its spatial maximum for each class
(the paper then averages these vectors over scales and flips; whether its maps were softmax
outputs it does not say, so the maximum is taken over the scores). The paper's 3x3 offset
pooling for a finer stride is an evaluation procedure, not part of the model. The native input
is also the smallest. `width_multiplier` below 1 narrows every hidden layer, only for quick
tests.
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import check_range, register

# Per convolution: (features, kernel, stride, padding, pooling window and stride or 0 for none).
_CONFIGS = {
  "fast": dict(
    input_size=231,
    head_kernel=6,
    hidden=(3072, 4096),
    convs=((96, 11, 4, 0, 2), (256, 5, 1, 0, 2), (512, 3, 1, 1, 0), (1024, 3, 1, 1, 0), (1024, 3, 1, 1, 2)),
  ),
  "accurate": dict(
    input_size=221,
    head_kernel=5,
    hidden=(4096, 4096),
    convs=(
      (96, 7, 2, 0, 3),
      (256, 7, 1, 0, 2),
      (512, 3, 1, 1, 0),
      (512, 3, 1, 1, 0),
      (1024, 3, 1, 1, 0),
      (1024, 3, 1, 1, 3),
    ),
  ),
}


class OverFeat(nn.Module):
  num_classes: int
  input_size: int
  convs: Sequence[tuple[int, int, int, int, int]]
  head_kernel: int
  hidden: Sequence[int]
  dtype: Any = jnp.float32
  dropout_rate: float = 0.5
  width_multiplier: float = 1.0

  def __post_init__(self):
    check_range("width_multiplier", self.width_multiplier, low_open=True)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    if min(x.shape[1:3]) < self.input_size:
      raise ValueError(
        f"OverFeat needs inputs of at least {self.input_size}x{self.input_size}, got {x.shape[1]}x{x.shape[2]}"
      )
    width = lambda features: max(1, int(features * self.width_multiplier))
    conv = functools.partial(nn.Conv, dtype=self.dtype, padding="VALID", kernel_init=nn.initializers.normal(0.01))
    for index, (features, kernel, stride, padding, pool) in enumerate(self.convs, start=1):
      x = nn.relu(conv(width(features), (kernel, kernel), stride, padding=padding, name=f"conv{index}")(x))
      if pool:
        x = nn.max_pool(x, (pool, pool), strides=(pool, pool))
    for index, features in enumerate(self.hidden, start=len(self.convs) + 1):
      kernel = self.head_kernel if index == len(self.convs) + 1 else 1
      x = nn.relu(conv(width(features), (kernel, kernel), name=f"fc{index}")(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    scores = conv(self.num_classes, (1, 1), name=f"fc{len(self.convs) + len(self.hidden) + 1}")(x)
    return scores.max(axis=(1, 2))  # spatial max per class (Section 3.3); 1x1 at the native input


_SMALL = ((231, 231, 3), {"width_multiplier": 1 / 32})
register("overfeat_fast", native_input=(231, 231, 3), params=145_920_872, multiply_adds=2.801, small=_SMALL)(
  functools.partial(OverFeat, **_CONFIGS["fast"])
)
register("overfeat_accurate", native_input=(221, 221, 3), params=144_656_488, multiply_adds=5.355, small=_SMALL)(
  functools.partial(OverFeat, **_CONFIGS["accurate"])
)
