"""ResNet (He et al., 2015) and the families built on its template: ResNeXt (Xie et al., 2016),
SE-ResNet / SE-ResNeXt and SENet-154 (Hu et al., 2017).

Basic blocks for 18 and 34 layers, bottlenecks for 50, 101 and 152. Submodules carry
torchvision's ResNet names (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`),
so a torchvision state_dict maps onto the parameters by name; the squeeze-and-excitation
blocks, which torchvision lacks, are `se`. Convolutions pad k // 2 on each side, as torch
does, so stride-2 3x3 convolutions see the same pixels as torchvision's. Options:
- `stride_on`: where a bottleneck downsamples, on the first 1x1 convolution ("1x1", v1 as in
  the paper) or on the 3x3 ("3x3", v1.5 as in torchvision, ResNeXt and most recipes).
- `shortcut`: "A" zero-padded identity shortcuts, "B" projections only where the shape
  changes (the paper's choice for 50-152 and torchvision's), "C" projections everywhere.
- `activation`: "relu", or "prelu" (channel-wise parametric ReLU, He et al., 2015).
- `groups` and `group_width`: ResNeXt's cardinality and per-group width of the 3x3 convolution.
- `se_reduction`: > 0 adds a squeeze-and-excitation block with that ratio to every residual
  branch, before the addition.
- `zero_init_last_norm`: starts every residual branch at zero (Goyal et al., 2017).
- `stem="small"` adapts the network to 28-32 pixel inputs by replacing the 7x7 stride-2
  convolution and the max pooling with one 3x3 stride-1 convolution (the CIFAR ResNets' stem).
  `stem="deep"` is SENet-154's: three 3x3 convolutions of `width`, `width` and 2 `width`
  channels (the first with stride 2), then a 3x3 stride-2 max pooling with torch's ceil_mode.
- `dropout_rate`: dropout before the classifier (0 except for SENet-154's 0.2).

`senet154` is Cadene's pretrainedmodels SENet-154 (115,088,984 parameters): SE-ResNeXt-152
64x4d with the deep stem, the first 1x1 convolution of each bottleneck at half the width of
the grouped 3x3, and 3x3 stride-2 projections in the downsampling shortcuts. Its stem is named
as Cadene's (`layer0.conv1` ... `layer0.bn3`); Cadene's `se_module.fc1`/`fc2` are `se.reduce`/
`se.expand` here and its `last_linear` is `fc`.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import OptionError, check_choice, register
from imagenet_train.models.layers import PReLU, SqueezeExcitation, max_pool_ceil

# He et al. initialise convolutions with N(0, 2/fan_out) (torchvision's kaiming_normal_, fan_out).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(features, kernel, strides=1, **kwargs):
  """A bias-free convolution padded as torch pads it, k // 2 on every side."""
  return nn.Conv(
    features,
    kernel,
    strides,
    padding=[(k // 2, k // 2) for k in kernel],
    use_bias=False,
    kernel_init=_conv_init,
    **kwargs,
  )


class ResidualBlock(nn.Module):
  features: int  # the block's inner width before ResNeXt's widening (64, 128, 256, 512)
  strides: int
  bottleneck: bool
  stride_on: str
  shortcut: str
  groups: int
  group_width: int
  se_reduction: int
  first_width: float  # the first 1x1's width as a fraction of the grouped 3x3's (SENet-154: 0.5)
  shortcut_kernel: int  # the projection's kernel where the shortcut downsamples (SENet-154: 3)
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  act: Callable[[], Callable]
  last_norm_init: Callable
  dtype: Any

  def conv_norm(self, index, x, features, kernel, strides=1, groups=1, scale_init=nn.initializers.ones):
    x = self.conv(features, kernel, strides, feature_group_count=groups, name=f"conv{index}")(x)
    return self.norm(scale_init=scale_init, name=f"bn{index}")(x)

  @nn.compact
  def __call__(self, x):
    if self.bottleneck:
      inner = self.features * self.group_width // 64 * self.groups
      first_stride, middle_stride = (self.strides, 1) if self.stride_on == "1x1" else (1, self.strides)
      y = self.act()(self.conv_norm(1, x, int(inner * self.first_width), (1, 1), first_stride))
      y = self.act()(self.conv_norm(2, y, inner, (3, 3), middle_stride, groups=self.groups))
      y = self.conv_norm(3, y, self.features * 4, (1, 1), scale_init=self.last_norm_init)
    else:
      y = self.act()(self.conv_norm(1, x, self.features, (3, 3), self.strides))
      y = self.conv_norm(2, y, self.features, (3, 3), scale_init=self.last_norm_init)
    if self.se_reduction:
      y = SqueezeExcitation(self.se_reduction, dtype=self.dtype, name="se")(y)
    shortcut = x
    if self.shortcut == "C" or x.shape != y.shape:
      if self.shortcut == "A":
        shortcut = x[:, :: self.strides, :: self.strides, :]
        shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (0, y.shape[-1] - x.shape[-1])))
      else:
        kernel = (self.shortcut_kernel,) * 2 if self.strides > 1 else (1, 1)
        shortcut = self.norm(name="downsample.1")(self.conv(y.shape[-1], kernel, self.strides, name="downsample.0")(x))
    return self.act()(shortcut + y)


class ResNet(nn.Module):
  num_classes: int
  # The architecture, fixed by each registration.
  stage_sizes: Sequence[int]
  bottleneck: bool
  groups: int
  group_width: int
  se_reduction: int
  first_width: float
  shortcut_kernel: int
  # The options.
  dtype: Any = jnp.float32
  stride_on: str = "3x3"
  shortcut: str = "B"
  activation: str = "relu"
  stem: str = "imagenet"
  width: int = 64
  zero_init_last_norm: bool = False
  dropout_rate: float = 0.0

  def __post_init__(self):
    check_choice("stride_on", self.stride_on, ("1x1", "3x3"))  # v1 or v1.5
    check_choice("shortcut", self.shortcut, ("A", "B", "C"))
    check_choice("activation", self.activation, ("relu", "prelu"))
    check_choice("stem", self.stem, ("imagenet", "small", "deep"))
    if self.stem == "deep" and self.shortcut == "A" and not self.bottleneck:
      # Zero padding can widen a shortcut but not narrow the deep stem's 2 * width channels.
      raise OptionError("shortcut 'A' needs a bottleneck ResNet with the deep stem")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    minimum = 8 if self.stem == "small" else 32
    if min(x.shape[1:3]) < minimum:
      raise ValueError(
        f"ResNet with the {self.stem} stem needs inputs of at least {minimum}x{minimum}, got {x.shape[1]}x{x.shape[2]}"
      )
    conv = functools.partial(_conv, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)
    act = (lambda: nn.relu) if self.activation == "relu" else PReLU
    if self.stem == "deep":
      for index, (features, strides) in enumerate(((self.width, 2), (self.width, 1), (2 * self.width, 1)), 1):
        x = act()(norm(name=f"layer0.bn{index}")(conv(features, (3, 3), strides, name=f"layer0.conv{index}")(x)))
      x = max_pool_ceil(x, 3, 2)
    elif self.stem == "imagenet":
      x = act()(norm(name="bn1")(conv(self.width, (7, 7), 2, name="conv1")(x)))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=[(1, 1), (1, 1)])
    else:
      x = act()(norm(name="bn1")(conv(self.width, (3, 3), 1, name="conv1")(x)))
    last_norm_init = nn.initializers.zeros if self.zero_init_last_norm else nn.initializers.ones
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        x = ResidualBlock(
          features=self.width * 2**stage,
          strides=2 if stage > 0 and block == 0 else 1,
          bottleneck=self.bottleneck,
          stride_on=self.stride_on,
          shortcut=self.shortcut,
          groups=self.groups,
          group_width=self.group_width,
          se_reduction=self.se_reduction,
          first_width=self.first_width,
          shortcut_kernel=self.shortcut_kernel,
          conv=conv,
          norm=norm,
          act=act,
          last_norm_init=last_norm_init,
          dtype=self.dtype,
          name=f"layer{stage + 1}.{block}",
        )(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


_DEPTHS = {
  18: ([2, 2, 2, 2], False),
  34: ([3, 4, 6, 3], False),
  50: ([3, 4, 6, 3], True),
  101: ([3, 4, 23, 3], True),
  152: ([3, 8, 36, 3], True),
}


def _resnet(
  depth: int,
  groups: int = 1,
  group_width: int = 64,
  se_reduction: int = 0,
  first_width: float = 1.0,
  shortcut_kernel: int = 1,
):
  stage_sizes, bottleneck = _DEPTHS[depth]
  return functools.partial(
    ResNet,
    stage_sizes=stage_sizes,
    bottleneck=bottleneck,
    groups=groups,
    group_width=group_width,
    se_reduction=se_reduction,
    first_width=first_width,
    shortcut_kernel=shortcut_kernel,
  )


# Counts at 224 with 1000 classes and multiply-adds (G): counted by models.counting, as
# torchvision's "GFLOPS" count them; papers' own figures where marked.
_SMALL = ((32, 32, 3), {"stem": "small", "width": 4})
_SMALL_GROUPED = ((32, 32, 3), {"stem": "small", "width": 16})  # 16: each group keeps a channel
_SMALL_SE = ((32, 32, 3), {"stem": "small", "width": 16})  # width 16: SE's C/16 must be at least 1
for _depth, _params, _multiply_adds in (
  (18, 11_689_512, 1.814),
  (34, 21_797_672, 3.664),
  (50, 25_557_032, 4.089),
  (101, 44_549_160, 7.801),
  (152, 60_192_808, 11.514),
):
  register(f"resnet{_depth}", params=_params, multiply_adds=_multiply_adds, small=_SMALL)(_resnet(_depth))
for _depth, _groups, _group_width, _params, _multiply_adds in (
  (50, 32, 4, 25_028_904, 4.230),
  (101, 32, 4, 44_177_704, 7.97),
  (101, 32, 8, 88_791_336, 16.414),
  (101, 64, 4, 83_455_272, 15.46),
):
  register(
    f"resnext{_depth}_{_groups}x{_group_width}d", params=_params, multiply_adds=_multiply_adds, small=_SMALL_GROUPED
  )(_resnet(_depth, _groups, _group_width))
# SE-ResNet's FLOP counts match v1 striding (the stride on the first 1x1), so that is its
# default; SE-ResNeXt keeps ResNeXt's stride on the 3x3. Multiply-adds: the SENet paper's
# Table 2 (v1 striding for SE-ResNet), and timm's figure for SENet-154.
for _depth, _params, _multiply_adds in ((50, 28_088_024, 3.87), (101, 49_326_872, 7.60), (152, 66_821_848, 11.32)):
  register(
    f"se_resnet{_depth}", params=_params, multiply_adds=_multiply_adds, small=_SMALL_SE, defaults=dict(stride_on="1x1")
  )(_resnet(_depth, se_reduction=16))
for _depth, _params, _multiply_adds in ((50, 27_559_896, 4.25), (101, 48_955_416, 8.00)):
  register(f"se_resnext{_depth}_32x4d", params=_params, multiply_adds=_multiply_adds, small=_SMALL_SE)(
    _resnet(_depth, 32, 4, se_reduction=16)
  )
register(
  "senet154",
  params=115_088_984,
  multiply_adds=20.77,
  small=((32, 32, 3), {"width": 32}),  # 64 groups
  defaults=dict(stem="deep", dropout_rate=0.2),
)(_resnet(152, 64, 4, se_reduction=16, first_width=0.5, shortcut_kernel=3))
