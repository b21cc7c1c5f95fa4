"""ResNet (He et al., 2015) and the families built on its template: ResNeXt (Xie et al., 2016)
and SE-ResNet / SE-ResNeXt (Hu et al., 2017).

Basic blocks for 18 and 34 layers, bottlenecks for 50, 101 and 152. Options:
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
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import register
from imagenet_train.models.layers import PReLU, SqueezeExcitation

# He et al. initialise convolutions with N(0, 2/fan_out) (torchvision's kaiming_normal_, fan_out).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ResidualBlock(nn.Module):
  features: int  # the block's inner width before ResNeXt's widening (64, 128, 256, 512)
  strides: int
  bottleneck: bool
  stride_on: str
  shortcut: str
  groups: int
  group_width: int
  se_reduction: int
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  act: Callable[[], Callable]
  last_norm_init: Callable
  dtype: Any

  @nn.compact
  def __call__(self, x):
    if self.bottleneck:
      inner = self.features * self.group_width // 64 * self.groups
      first_stride, middle_stride = (self.strides, 1) if self.stride_on == "1x1" else (1, self.strides)
      y = self.act()(self.norm()(self.conv(inner, (1, 1), first_stride)(x)))
      y = self.act()(self.norm()(self.conv(inner, (3, 3), middle_stride, feature_group_count=self.groups)(y)))
      y = self.norm(scale_init=self.last_norm_init)(self.conv(self.features * 4, (1, 1))(y))
    else:
      y = self.act()(self.norm()(self.conv(self.features, (3, 3), self.strides)(x)))
      y = self.norm(scale_init=self.last_norm_init)(self.conv(self.features, (3, 3))(y))
    if self.se_reduction:
      y = SqueezeExcitation(self.se_reduction, dtype=self.dtype, name="se")(y)
    shortcut = x
    if self.shortcut == "C" or x.shape != y.shape:
      if self.shortcut == "A":
        shortcut = x[:, ::self.strides, ::self.strides, :]
        shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (0, y.shape[-1] - x.shape[-1])))
      else:
        shortcut = self.norm(name="shortcut_norm")(
            self.conv(y.shape[-1], (1, 1), self.strides, name="shortcut_conv")(x))
    return self.act()(shortcut + y)


class ResNet(nn.Module):
  num_classes: int
  stage_sizes: Sequence[int]
  bottleneck: bool
  dtype: Any = jnp.float32
  stride_on: str = "3x3"
  shortcut: str = "B"
  activation: str = "relu"
  groups: int = 1
  group_width: int = 64
  se_reduction: int = 0
  stem: str = "imagenet"
  width: int = 64
  zero_init_last_norm: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool):
    minimum = 32 if self.stem == "imagenet" else 8
    if min(x.shape[1:3]) < minimum:
      raise ValueError(f"ResNet with the {self.stem} stem needs inputs of at least {minimum}x{minimum}, "
                       f"got {x.shape[1]}x{x.shape[2]}")
    conv = functools.partial(nn.Conv, use_bias=False, padding="SAME", kernel_init=_conv_init, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             dtype=self.dtype)
    act = (lambda: nn.relu) if self.activation == "relu" else PReLU
    if self.stem == "imagenet":
      x = act()(norm(name="stem_norm")(conv(self.width, (7, 7), 2, padding=[(3, 3), (3, 3)], name="stem_conv")(x)))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=[(1, 1), (1, 1)])
    else:
      x = act()(norm(name="stem_norm")(conv(self.width, (3, 3), 1, name="stem_conv")(x)))
    last_norm_init = nn.initializers.zeros if self.zero_init_last_norm else nn.initializers.ones
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        x = ResidualBlock(features=self.width * 2**stage, strides=2 if stage > 0 and block == 0 else 1,
                          bottleneck=self.bottleneck, stride_on=self.stride_on, shortcut=self.shortcut,
                          groups=self.groups, group_width=self.group_width, se_reduction=self.se_reduction,
                          conv=conv, norm=norm, act=act, last_norm_init=last_norm_init, dtype=self.dtype)(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)


_DEPTHS = {18: ([2, 2, 2, 2], False), 34: ([3, 4, 6, 3], False), 50: ([3, 4, 6, 3], True),
           101: ([3, 4, 23, 3], True), 152: ([3, 8, 36, 3], True)}


def _constructor(depth: int, groups: int = 1, group_width: int = 64, se_reduction: int = 0,
                 stride_on_default: str = "3x3"):
  stage_sizes, bottleneck = _DEPTHS[depth]

  def build(*, num_classes: int, dtype=jnp.float32, stride_on: str = stride_on_default, shortcut: str = "B",
            activation: str = "relu", stem: str = "imagenet", width: int = 64,
            zero_init_last_norm: bool = False) -> nn.Module:
    if stride_on not in ("1x1", "3x3"):
      raise TypeError(f"stride_on must be '1x1' (v1) or '3x3' (v1.5), not {stride_on!r}")
    if shortcut not in ("A", "B", "C"):
      raise TypeError(f"shortcut must be 'A', 'B' or 'C', not {shortcut!r}")
    if activation not in ("relu", "prelu"):
      raise TypeError(f"activation must be 'relu' or 'prelu', not {activation!r}")
    if stem not in ("imagenet", "small"):
      raise TypeError(f"stem must be 'imagenet' or 'small', not {stem!r}")
    return ResNet(num_classes=num_classes, stage_sizes=stage_sizes, bottleneck=bottleneck, dtype=dtype,
                  stride_on=stride_on, shortcut=shortcut, activation=activation, groups=groups,
                  group_width=group_width, se_reduction=se_reduction, stem=stem, width=width,
                  zero_init_last_norm=zero_init_last_norm)

  return build


for _depth in _DEPTHS:
  register(f"resnet{_depth}")(_constructor(_depth))
for _depth, _groups, _group_width in ((50, 32, 4), (101, 32, 4), (101, 32, 8), (101, 64, 4)):
  register(f"resnext{_depth}_{_groups}x{_group_width}d")(_constructor(_depth, _groups, _group_width))
# SE-ResNet's FLOP counts match v1 striding (the stride on the first 1x1), so that is its
# default; SE-ResNeXt keeps ResNeXt's stride on the 3x3.
for _depth in (50, 101, 152):
  register(f"se_resnet{_depth}")(_constructor(_depth, se_reduction=16, stride_on_default="1x1"))
for _depth in (50, 101):
  register(f"se_resnext{_depth}_32x4d")(_constructor(_depth, 32, 4, se_reduction=16))
