"""DenseNet-BC (Huang, Liu, van der Maaten and Weinberger, 2017) as torchvision ships it.

A 7x7 stride-2 stem (2k channels, 96 for DenseNet-161), BatchNorm, ReLU and 3x3 stride-2 max
pooling, then four dense blocks. Each dense layer is BN-ReLU-conv1x1 (4k channels) followed
by BN-ReLU-conv3x3 (k channels), and its output is concatenated to everything before it in the
block. Transitions halve the channels with BN-ReLU-conv1x1 and the map with 2x2 average
pooling. A final BN and ReLU, global average pooling and the classifier; no dropout.
DenseNet-121, -169, -201 and -264 have growth rate k=32, DenseNet-161 k=48. DenseNet-264 is
the paper's; torchvision does not ship it, but its names follow the same pattern.

Submodule paths joined with "." are torchvision's state_dict names (`features.conv0`,
`features.denseblock1.denselayer1.norm1`, `features.transition1.conv`, `features.norm5`,
`classifier`). Convolutions start from torchvision's kaiming_normal_ in its default fan_in mode
(N(0, 2/fan_in), where ResNet uses fan_out), the classifier from torch's default Linear init
with a zero bias.

Each dense layer is rematerialised except for its 1x1 convolution's output: training keeps
only the k new channels and the 4k bottleneck channels of every layer, and recomputes the
concatenation, BatchNorm and ReLU (cheap elementwise work) in the backward pass, instead of
storing a copy of the ever-wider concatenated input per layer (torchvision's
`memory_efficient`, without recomputing any convolution): DenseNet-121 on 32 images of 224
saves 1.8 GiB of residuals for the backward pass instead of 7.9 GiB.

`width_multiplier` scales the growth rate and the stem together, and `block_sizes` sets the
layers of each dense block: both only for quick tests, since XLA unrolls every dense layer and
compiling the full depths takes minutes on a small CPU.
Inputs must be at least 29x29 so that the third transition's pooling has a 2x2 map to pool
(the last map is then 1x1).
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from imagenet_train.models import OptionError, check_range, register

_conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# torch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_linear_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
_MIN_SIZE = 29


class DenseLayer(nn.Module):
  growth_rate: int
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> jax.Array:
    x = nn.relu(self.norm(name="norm1")(jnp.concatenate(features, axis=-1)))
    x = checkpoint_name(self.conv(4 * self.growth_rate, (1, 1), name="conv1")(x), "bottleneck")
    x = nn.relu(self.norm(name="norm2")(x))
    return self.conv(self.growth_rate, (3, 3), padding=1, name="conv2")(x)


_RematDenseLayer = nn.remat(DenseLayer, policy=jax.checkpoint_policies.save_only_these_names("bottleneck"))


class DenseNet(nn.Module):
  num_classes: int
  growth_rate: int  # k, and the stem's width: the architecture, fixed by each registration
  stem_width: int
  block_sizes: Sequence[int]  # an option too, with the registration's default
  dtype: Any = jnp.float32
  width_multiplier: float = 1.0  # scales k and the stem together

  def __post_init__(self):
    check_range("width_multiplier", self.width_multiplier, low_open=True)
    if len(self.block_sizes) != 4 or min(self.block_sizes) < 1:
      raise OptionError(f"block_sizes must be four positive layer counts, not {self.block_sizes!r}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    if min(x.shape[1:3]) < _MIN_SIZE:
      raise ValueError(
        f"DenseNet needs inputs of at least {_MIN_SIZE}x{_MIN_SIZE} (224 native), got {x.shape[1]}x{x.shape[2]}"
      )
    scale = lambda width: max(1, round(width * self.width_multiplier))
    growth_rate = scale(self.growth_rate)
    conv = functools.partial(nn.Conv, use_bias=False, padding=0, kernel_init=_conv_init, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)
    x = conv(scale(self.stem_width), (7, 7), 2, padding=3, name="features.conv0")(x)
    x = nn.relu(norm(name="features.norm0")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for block_index, block_size in enumerate(self.block_sizes, start=1):
      block = f"features.denseblock{block_index}"
      features = [x]
      for layer_index in range(1, block_size + 1):
        layer = _RematDenseLayer(growth_rate, conv, norm, name=f"{block}.denselayer{layer_index}")
        features.append(layer(tuple(features)))
      x = jnp.concatenate(features, axis=-1)
      if block_index < len(self.block_sizes):
        transition = f"features.transition{block_index}"
        x = nn.relu(norm(name=f"{transition}.norm")(x))
        x = conv(x.shape[-1] // 2, (1, 1), name=f"{transition}.conv")(x)
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(norm(name="features.norm5")(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=_linear_init, dtype=self.dtype, name="classifier")(x)


# depth: (growth rate k, layers per block, stem width, parameters and multiply-adds (G) at 224
# with 1000 classes)
_CONFIGS = {
  121: (32, (6, 12, 24, 16), 64, 7_978_856, 2.834),
  169: (32, (6, 12, 32, 32), 64, 14_149_480, 3.360),
  201: (32, (6, 12, 48, 32), 64, 20_013_928, 4.291),
  161: (48, (6, 12, 36, 24), 96, 28_681_000, 7.728),
  264: (32, (6, 12, 64, 48), 64, 33_337_704, 5.752),
}
# Every kind of layer, with fewer of them: XLA unrolls DenseNet-121's 58 dense layers.
_SMALL = ((32, 32, 3), {"width_multiplier": 1 / 8, "block_sizes": (2, 2, 2, 2)})
for _depth, (_growth_rate, _block_sizes, _stem_width, _params, _multiply_adds) in _CONFIGS.items():
  register(
    f"densenet{_depth}",
    params=_params,
    multiply_adds=_multiply_adds,
    small=_SMALL,
    defaults=dict(block_sizes=_block_sizes),
  )(functools.partial(DenseNet, growth_rate=_growth_rate, stem_width=_stem_width))
