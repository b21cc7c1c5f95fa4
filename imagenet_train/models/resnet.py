"""ResNet (He, Zhang, Ren and Sun, 2015).

Basic blocks for 18 and 34 layers, bottlenecks for 50, 101 and 152, projection shortcuts where
the shape changes (the paper's option B). `stride_on` chooses where a bottleneck downsamples:
on the first 1x1 convolution ("1x1", v1 as in the paper) or on the 3x3 ("3x3", v1.5 as in
torchvision). `zero_init_last_norm` starts every residual branch at zero (Goyal et al., 2017).
`stem="small"` adapts the network to 28-32 pixel inputs by replacing the 7x7 stride-2
convolution and the max pooling with one 3x3 stride-1 convolution, the usual CIFAR and
Fashion-MNIST adaptation.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import register

# He et al. initialise convolutions with N(0, 2/fan_out) (torchvision's kaiming_normal_, fan_out).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ResidualBlock(nn.Module):
  features: int
  strides: int
  bottleneck: bool
  stride_on: str
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  last_norm_init: Callable

  @nn.compact
  def __call__(self, x):
    if self.bottleneck:
      first_stride, middle_stride = (self.strides, 1) if self.stride_on == "1x1" else (1, self.strides)
      y = nn.relu(self.norm()(self.conv(self.features, (1, 1), first_stride)(x)))
      y = nn.relu(self.norm()(self.conv(self.features, (3, 3), middle_stride)(y)))
      y = self.norm(scale_init=self.last_norm_init)(self.conv(self.features * 4, (1, 1))(y))
    else:
      y = nn.relu(self.norm()(self.conv(self.features, (3, 3), self.strides)(x)))
      y = self.norm(scale_init=self.last_norm_init)(self.conv(self.features, (3, 3))(y))
    shortcut = x
    if x.shape != y.shape:
      shortcut = self.norm(name="shortcut_norm")(
          self.conv(y.shape[-1], (1, 1), self.strides, name="shortcut_conv")(x))
    return nn.relu(shortcut + y)


class ResNet(nn.Module):
  num_classes: int
  stage_sizes: Sequence[int]
  bottleneck: bool
  dtype: Any = jnp.float32
  stride_on: str = "3x3"
  stem: str = "imagenet"
  width: int = 64
  zero_init_last_norm: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(nn.Conv, use_bias=False, padding="SAME", kernel_init=_conv_init, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             dtype=self.dtype)
    if self.stem == "imagenet":
      x = nn.relu(norm(name="stem_norm")(conv(self.width, (7, 7), 2, padding=[(3, 3), (3, 3)], name="stem_conv")(x)))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=[(1, 1), (1, 1)])
    else:
      x = nn.relu(norm(name="stem_norm")(conv(self.width, (3, 3), 1, name="stem_conv")(x)))
    last_norm_init = nn.initializers.zeros if self.zero_init_last_norm else nn.initializers.ones
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        x = ResidualBlock(features=self.width * 2**stage, strides=2 if stage > 0 and block == 0 else 1,
                          bottleneck=self.bottleneck, stride_on=self.stride_on, conv=conv, norm=norm,
                          last_norm_init=last_norm_init)(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)


_DEPTHS = {18: ([2, 2, 2, 2], False), 34: ([3, 4, 6, 3], False), 50: ([3, 4, 6, 3], True),
           101: ([3, 4, 23, 3], True), 152: ([3, 8, 36, 3], True)}


def _constructor(depth: int):
  stage_sizes, bottleneck = _DEPTHS[depth]

  def build(*, num_classes: int, dtype=jnp.float32, stride_on: str = "3x3", stem: str = "imagenet",
            width: int = 64, zero_init_last_norm: bool = False) -> nn.Module:
    if stride_on not in ("1x1", "3x3"):
      raise TypeError(f"stride_on must be '1x1' (v1) or '3x3' (v1.5), not {stride_on!r}")
    if stem not in ("imagenet", "small"):
      raise TypeError(f"stem must be 'imagenet' or 'small', not {stem!r}")
    return ResNet(num_classes=num_classes, stage_sizes=stage_sizes, bottleneck=bottleneck, dtype=dtype,
                  stride_on=stride_on, stem=stem, width=width, zero_init_last_norm=zero_init_last_norm)

  return build


for _depth in _DEPTHS:
  register(f"resnet{_depth}")(_constructor(_depth))
