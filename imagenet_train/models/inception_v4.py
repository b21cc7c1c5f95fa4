"""Inception-v4 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke and Alemi, 2016, "Inception-v4,
Inception-ResNet and the Impact of Residual Connections on Learning").

Both follow the networks Google released in TF-slim, as Cadene's pretrainedmodels and timm port
them: 299x299 inputs, every convolution followed by BatchNorm (epsilon 1e-3, TF-slim's) and ReLU
and without a bias, global average pooling, dropout 0.2 (TF-slim's keep_prob 0.8) and the
classifier. Submodules carry Cadene's names (`features.6.branch1.0.conv`, `repeat_1.3.conv2d`,
`last_linear`), so a pretrainedmodels or timm state_dict maps onto the parameters by name.

`inception_v4` is the paper's Figures 3 to 9: the stem, 4 Inception-A, Reduction-A
(k, l, m, n = 192, 224, 256, 384), 7 Inception-B, Reduction-B and 3 Inception-C blocks.

`inception_resnet_v2` is the released network, which departs from the paper's Figures 3 and 16
to 18: an Inception-v3-like stem ending in a 320-channel mixed block instead of Figure 3's, so
the three residual stages are 320, 1088 and 2080 channels wide rather than 384, 1152 and 2048.
Ten Inception-ResNet-A (block35), twenty -B (block17) and ten -C (block8) blocks add their
branches, projected back to the block's width by a 1x1 convolution with a bias and no BatchNorm,
scaled by 0.17, 0.10 and 0.20; the last block8 is unscaled and has no ReLU, as released.
Then a 1x1 convolution to 1536 channels.

Both need inputs of at least 75x75, where the last grid is 1x1 (8x8 at 299).
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import register
from imagenet_train.models.layers import BasicConv

# TF-slim's inception_arg_scope: variance_scaling_initializer(), He's N(0, 2/fan_in), truncated.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
_MINIMUM = 75


def _conv_block(train: bool, dtype):
  """Every convolution of the Inception blocks: layers.BasicConv with TF-slim's initialisation,
  called on its input alone. `padding` is Flax's: "VALID", or "SAME", which for the stride-1 odd
  kernels used with it pads k // 2 on each side as the torch ports do."""

  def conv(features, kernel, strides=1, padding="VALID", *, name):
    block = BasicConv(features, kernel, strides, padding, kernel_init=_conv_init, dtype=dtype, name=name)
    return lambda x: block(x, train)

  return conv


def _branch(conv, x, name: str, *layers):
  """Cadene's nn.Sequential of BasicConv2d: the i-th convolution of `layers` is named `{name}.{i}`."""
  for index, layer in enumerate(layers):
    x = conv(*layer, name=f"{name}.{index}")(x)
  return x


def _max_pool(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2))


def _avg_pool(x):
  """The pooling branches' 3x3 average, which divides by the pixels inside the image at borders."""
  return nn.avg_pool(x, (3, 3), padding="SAME", count_include_pad=False)


class Mixed3a(nn.Module):  # the stem's first split: max pooling beside a stride-2 convolution
  conv: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([_max_pool(x), self.conv(96, 3, 2, name="conv")(x)], axis=-1)


class Mixed4a(nn.Module):  # the stem's second split, 1x7 and 7x1 on one side
  conv: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate(
      [
        _branch(self.conv, x, "branch0", (64, 1), (96, 3)),
        _branch(self.conv, x, "branch1", (64, 1), (64, (1, 7), 1, "SAME"), (64, (7, 1), 1, "SAME"), (96, 3)),
      ],
      axis=-1,
    )


class Mixed5a(nn.Module):  # the stem's last split: a stride-2 convolution beside max pooling
  conv: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([self.conv(192, 3, 2, name="conv")(x), _max_pool(x)], axis=-1)


class InceptionA(nn.Module):  # Figure 4, 35x35x384
  conv: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate(
      [
        self.conv(96, 1, name="branch0")(x),
        _branch(self.conv, x, "branch1", (64, 1), (96, 3, 1, "SAME")),
        _branch(self.conv, x, "branch2", (64, 1), (96, 3, 1, "SAME"), (96, 3, 1, "SAME")),
        self.conv(96, 1, name="branch3.1")(_avg_pool(x)),
      ],
      axis=-1,
    )


class ReductionA(nn.Module):  # Figure 7, 35x35 to 17x17, shared by both networks
  conv: Callable[..., nn.Module]
  k: int
  l: int  # noqa: E741 (the paper's Table 1 names the filter counts k, l, m, n)
  m: int
  n: int

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate(
      [
        self.conv(self.n, 3, 2, name="branch0")(x),
        _branch(self.conv, x, "branch1", (self.k, 1), (self.l, 3, 1, "SAME"), (self.m, 3, 2)),
        _max_pool(x),
      ],
      axis=-1,
    )


class InceptionB(nn.Module):  # Figure 5, 17x17x1024
  conv: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate(
      [
        self.conv(384, 1, name="branch0")(x),
        _branch(self.conv, x, "branch1", (192, 1), (224, (1, 7), 1, "SAME"), (256, (7, 1), 1, "SAME")),
        _branch(
          self.conv,
          x,
          "branch2",
          (192, 1),
          (192, (7, 1), 1, "SAME"),
          (224, (1, 7), 1, "SAME"),
          (224, (7, 1), 1, "SAME"),
          (256, (1, 7), 1, "SAME"),
        ),
        self.conv(128, 1, name="branch3.1")(_avg_pool(x)),
      ],
      axis=-1,
    )


class ReductionB(nn.Module):  # Figure 8, 17x17 to 8x8
  conv: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate(
      [
        _branch(self.conv, x, "branch0", (192, 1), (192, 3, 2)),
        _branch(self.conv, x, "branch1", (256, 1), (256, (1, 7), 1, "SAME"), (320, (7, 1), 1, "SAME"), (320, 3, 2)),
        _max_pool(x),
      ],
      axis=-1,
    )


class InceptionC(nn.Module):  # Figure 6, 8x8x1536: two branches fork into 1x3 and 3x1
  conv: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    conv = self.conv
    fork1 = conv(384, 1, name="branch1_0")(x)
    fork2 = conv(384, 1, name="branch2_0")(x)
    fork2 = conv(512, (1, 3), 1, "SAME", name="branch2_2")(conv(448, (3, 1), 1, "SAME", name="branch2_1")(fork2))
    return jnp.concatenate(
      [
        conv(256, 1, name="branch0")(x),
        conv(256, (1, 3), 1, "SAME", name="branch1_1a")(fork1),
        conv(256, (3, 1), 1, "SAME", name="branch1_1b")(fork1),
        conv(256, (1, 3), 1, "SAME", name="branch2_3a")(fork2),
        conv(256, (3, 1), 1, "SAME", name="branch2_3b")(fork2),
        conv(256, 1, name="branch3.1")(_avg_pool(x)),
      ],
      axis=-1,
    )


def _check_input(x, model: str):
  if min(x.shape[1:3]) < _MINIMUM:
    raise ValueError(
      f"{model} needs inputs of at least {_MINIMUM}x{_MINIMUM} (299 native), got {x.shape[1]}x{x.shape[2]}"
    )


def _classify(x, num_classes, dropout_rate, train, dtype):
  x = nn.Dropout(dropout_rate, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
  return nn.Dense(num_classes, dtype=dtype, name="last_linear")(x)


class InceptionV4(nn.Module):
  num_classes: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x, *, train: bool):
    _check_input(x, "Inception-v4")
    conv = _conv_block(train, self.dtype)
    stem = [
      functools.partial(conv, 32, 3, 2),
      functools.partial(conv, 32, 3),
      functools.partial(conv, 64, 3, 1, "SAME"),
    ]
    blocks = [
      Mixed3a,
      Mixed4a,
      Mixed5a,
      *[InceptionA] * 4,
      functools.partial(ReductionA, k=192, l=224, m=256, n=384),
      *[InceptionB] * 7,
      ReductionB,
      *[InceptionC] * 3,
    ]
    # Cadene's `features` Sequential numbers the stem's convolutions and the blocks together.
    layers = stem + [functools.partial(block, conv) for block in blocks]
    for index, layer in enumerate(layers):
      x = layer(name=f"features.{index}")(x)
    return _classify(x, self.num_classes, self.dropout_rate, train, self.dtype)


class Mixed5b(nn.Module):  # Inception-ResNet-v2's last stem block, 35x35x320
  conv: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate(
      [
        self.conv(96, 1, name="branch0")(x),
        _branch(self.conv, x, "branch1", (48, 1), (64, 5, 1, "SAME")),
        _branch(self.conv, x, "branch2", (64, 1), (96, 3, 1, "SAME"), (96, 3, 1, "SAME")),
        self.conv(64, 1, name="branch3.1")(_avg_pool(x)),
      ],
      axis=-1,
    )


class Mixed7a(nn.Module):  # Inception-ResNet-v2's Reduction-B, 17x17 to 8x8
  conv: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate(
      [
        _branch(self.conv, x, "branch0", (256, 1), (384, 3, 2)),
        _branch(self.conv, x, "branch1", (256, 1), (288, 3, 2)),
        _branch(self.conv, x, "branch2", (256, 1), (288, 3, 1, "SAME"), (320, 3, 2)),
        _max_pool(x),
      ],
      axis=-1,
    )


class ResidualInception(nn.Module):
  """Block35, Block17 and Block8 (Inception-ResNet-A, -B and -C): x + scale * (1x1 of the branches)."""

  conv: Callable[..., nn.Module]
  grid: int  # 35, 17 or 8: which of the three blocks
  scale: float
  activate: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = self.conv
    if self.grid == 35:
      branches = [
        conv(32, 1, name="branch0")(x),
        _branch(conv, x, "branch1", (32, 1), (32, 3, 1, "SAME")),
        _branch(conv, x, "branch2", (32, 1), (48, 3, 1, "SAME"), (64, 3, 1, "SAME")),
      ]
    elif self.grid == 17:
      branches = [
        conv(192, 1, name="branch0")(x),
        _branch(conv, x, "branch1", (128, 1), (160, (1, 7), 1, "SAME"), (192, (7, 1), 1, "SAME")),
      ]
    else:
      branches = [
        conv(192, 1, name="branch0")(x),
        _branch(conv, x, "branch1", (192, 1), (224, (1, 3), 1, "SAME"), (256, (3, 1), 1, "SAME")),
      ]
    # Without BatchNorm, so that the scale acts on the residual itself (the paper's section 3.3).
    residual = nn.Conv(x.shape[-1], (1, 1), kernel_init=_conv_init, dtype=self.dtype, name="conv2d")(
      jnp.concatenate(branches, axis=-1)
    )
    x = x + self.scale * residual
    return nn.relu(x) if self.activate else x


class InceptionResNetV2(nn.Module):
  num_classes: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x, *, train: bool):
    _check_input(x, "Inception-ResNet-v2")
    conv = _conv_block(train, self.dtype)
    x = conv(32, 3, 2, name="conv2d_1a")(x)
    x = conv(32, 3, name="conv2d_2a")(x)
    x = _max_pool(conv(64, 3, 1, "SAME", name="conv2d_2b")(x))
    x = _max_pool(conv(192, 3, name="conv2d_4a")(conv(80, 1, name="conv2d_3b")(x)))
    x = Mixed5b(conv, name="mixed_5b")(x)
    residual = functools.partial(ResidualInception, conv, dtype=self.dtype)
    for index in range(10):
      x = residual(35, 0.17, name=f"repeat.{index}")(x)
    x = ReductionA(conv, k=256, l=256, m=384, n=384, name="mixed_6a")(x)
    for index in range(20):
      x = residual(17, 0.10, name=f"repeat_1.{index}")(x)
    x = Mixed7a(conv, name="mixed_7a")(x)
    for index in range(9):
      x = residual(8, 0.20, name=f"repeat_2.{index}")(x)
    x = residual(8, 1.0, activate=False, name="block8")(x)
    x = conv(1536, 1, name="conv2d_7b")(x)
    return _classify(x, self.num_classes, self.dropout_rate, train, self.dtype)


# Counts of the released ports with 1000 classes; multiply-adds are timm's figures for the same ports.
register("inception_v4", native_input=(299, 299, 3), params=42_679_816, multiply_adds=12.28, small=((75, 75, 3), {}))(
  InceptionV4
)
register(
  "inception_resnet_v2", native_input=(299, 299, 3), params=55_843_464, multiply_adds=13.16, small=((75, 75, 3), {})
)(InceptionResNetV2)
