"""BN-Inception (Ioffe and Szegedy, 2015) and Inception-v3 (Szegedy et al., 2015) as torchvision ships it.

`bn_inception` is the network of the Batch Normalization paper's Figure 5 table, the one Caffe
ports and Cadene's pretrainedmodels call "bninception": GoogLeNet with BatchNorm (eps 1e-5)
after every convolution, the 5x5 branches replaced by two stacked 3x3 convolutions, a third
module at 28x28 (3a, 3b, 3c), modules 3c and 4e downsampling by stride 2 with a max-pooled
pass-through instead of separate pooling layers, average or max pooling inside modules as the
table gives, no LRN and no auxiliary heads. As in the paper (BN makes a bias redundant), the
convolutions have none; Caffe's biases fold into BatchNorm's running mean when importing.
Dropout defaults to 0, as in the paper's BN-x30. 11,285,224 parameters (Caffe's, with
biases: 11,295,240), 2.03 G multiply-adds at 224.

`inception_v3` is torchvision's Inception3 with its module names: 299x299 input, BatchNorm
(eps 1e-3) after every bias-free convolution, factorised 7x7 convolutions on the 17x17 grid,
dropout 0.5, truncated-normal weights and one auxiliary classifier ("AuxLogits") on the 17x17
grid, weighted 0.4 in the loss as in torchvision's reference recipe. 27,161,264 parameters with
the auxiliary head, 23,834,568 without; 5.71 G multiply-adds. Like torchvision it accepts 75x75
and up; below 299, where torchvision's auxiliary head fails, the head pools the grid to its 5x5
adaptively. The head runs while training (and at init), reports its logits in the
"aux_logits" collection, and is left out with `aux_heads=False`.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import check_range, register
from imagenet_train.models.layers import (
  AuxiliaryClassifiers,
  BasicConv,
  adaptive_avg_pool,
  max_pool_ceil,
  sow_aux_logits,
  torch_trunc_normal,
)

# The Figure 5 table: 1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pooling, pool
# projection (0: the pooled input passes through), stride.
_FIGURE_5 = {
  "3a": (64, 64, 64, 64, 96, "avg", 32, 1),
  "3b": (64, 64, 96, 64, 96, "avg", 64, 1),
  "3c": (0, 128, 160, 64, 96, "max", 0, 2),
  "4a": (224, 64, 96, 96, 128, "avg", 128, 1),
  "4b": (192, 96, 128, 96, 128, "avg", 128, 1),
  "4c": (160, 128, 160, 128, 160, "avg", 128, 1),
  "4d": (96, 128, 192, 160, 192, "avg", 128, 1),
  "4e": (0, 128, 192, 192, 256, "max", 0, 2),
  "5a": (352, 192, 320, 160, 224, "avg", 128, 1),
  "5b": (352, 192, 320, 192, 224, "max", 128, 1),
}

# No initialisation is published for BN-Inception; He et al.'s, as the other BatchNorm families here use.
_he_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _avg_pool_3x3(x):
  # torch's avg_pool2d(3, stride 1, padding 1) and Caffe's average pooling count the zero padding.
  return nn.avg_pool(x, (3, 3), padding=((1, 1), (1, 1)), count_include_pad=True)


def _pass_through_pool(x):
  # Caffe's 3x3/2 pooling rounds up, which gives the strided convolutions' (n + 1) // 2 cells
  # only for even n (as at 224); an odd side gets one more -inf row or column, which keeps the
  # windows where they were and adds the missing last cell.
  odd = [(0, 0)] + [(0, side % 2) for side in x.shape[1:3]] + [(0, 0)]
  return max_pool_ceil(jnp.pad(x, odd, constant_values=-jnp.inf), 3, 2)


class BNInceptionModule(nn.Module):
  spec: Sequence[Any]  # a row of _FIGURE_5
  conv_block: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, train: bool):
    ones, reduce3, conv3, reduce_double, double, pool, proj, strides = self.spec
    conv = lambda features, kernel, name, inputs, stride=1: self.conv_block(
      features, kernel, stride, kernel // 2, name=name
    )(inputs, train)
    branches = [conv(ones, 1, "1x1", x)] if ones else []
    branches.append(conv(conv3, 3, "3x3", conv(reduce3, 1, "3x3_reduce", x), strides))
    y = conv(double, 3, "double_3x3_1", conv(reduce_double, 1, "double_3x3_reduce", x))
    branches.append(conv(double, 3, "double_3x3_2", y, strides))
    if strides == 2:
      branches.append(_pass_through_pool(x))
    else:
      pooled = _avg_pool_3x3(x) if pool == "avg" else nn.max_pool(x, (3, 3), padding=((1, 1), (1, 1)))
      branches.append(conv(proj, 1, "pool_proj", pooled))
    return jnp.concatenate(branches, axis=-1)


# 11,285,224 parameters (Caffe's, with biases: 11,295,240); 2.03 G multiply-adds is the SENet paper's figure.
@register("bn_inception", params=11_285_224, multiply_adds=2.03, small=((32, 32, 3), {}))
class BNInception(nn.Module):
  num_classes: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.0

  def __post_init__(self):
    check_range("dropout_rate", self.dropout_rate, high=1)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    if min(x.shape[1:3]) < 32:  # five stride-2 stages: the last maps are then 1x1
      raise ValueError(f"BN-Inception needs inputs of at least 32x32 (224 native), got {x.shape[1]}x{x.shape[2]}")
    conv = functools.partial(BasicConv, epsilon=1e-5, kernel_init=_he_init, dtype=self.dtype)
    x = max_pool_ceil(conv(64, 7, 2, 3, name="conv1_7x7_s2")(x, train), 3, 2)
    x = conv(192, 3, padding=1, name="conv2_3x3")(conv(64, 1, name="conv2_3x3_reduce")(x, train), train)
    x = max_pool_ceil(x, 3, 2)
    for module, spec in _FIGURE_5.items():
      x = BNInceptionModule(spec, conv, name=f"inception_{module}")(x, train)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="last_linear")(x)


def _block_conv(conv_block: Callable[..., nn.Module], train: bool):
  """Inside torchvision's Inception3 blocks a stride-1 convolution keeps the grid's size and a
  stride-2 one is unpadded."""

  def conv(features, kernel, name, inputs, strides=1):
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (kernel[0] // 2, kernel[1] // 2) if strides == 1 else 0
    return conv_block(features, kernel, strides, padding, name=name)(inputs, train)

  return conv


class InceptionA(nn.Module):
  pool_features: int
  conv_block: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, train: bool):
    conv = _block_conv(self.conv_block, train)
    branch5x5 = conv(64, 5, "branch5x5_2", conv(48, 1, "branch5x5_1", x))
    branch3x3dbl = conv(96, 3, "branch3x3dbl_2", conv(64, 1, "branch3x3dbl_1", x))
    branch3x3dbl = conv(96, 3, "branch3x3dbl_3", branch3x3dbl)
    branch_pool = conv(self.pool_features, 1, "branch_pool", _avg_pool_3x3(x))
    return jnp.concatenate([conv(64, 1, "branch1x1", x), branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
  conv_block: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, train: bool):
    conv = _block_conv(self.conv_block, train)
    branch3x3dbl = conv(96, 3, "branch3x3dbl_2", conv(64, 1, "branch3x3dbl_1", x))
    branch3x3dbl = conv(96, 3, "branch3x3dbl_3", branch3x3dbl, strides=2)
    branch_pool = nn.max_pool(x, (3, 3), (2, 2))
    return jnp.concatenate([conv(384, 3, "branch3x3", x, strides=2), branch3x3dbl, branch_pool], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int
  conv_block: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, train: bool):
    conv = _block_conv(self.conv_block, train)
    c7 = self.channels_7x7
    branch7x7 = conv(c7, 1, "branch7x7_1", x)
    branch7x7 = conv(c7, (1, 7), "branch7x7_2", branch7x7)
    branch7x7 = conv(192, (7, 1), "branch7x7_3", branch7x7)
    branch7x7dbl = conv(c7, 1, "branch7x7dbl_1", x)
    for index, (features, kernel) in enumerate([(c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)), (192, (1, 7))], start=2):
      branch7x7dbl = conv(features, kernel, f"branch7x7dbl_{index}", branch7x7dbl)
    branch_pool = conv(192, 1, "branch_pool", _avg_pool_3x3(x))
    return jnp.concatenate([conv(192, 1, "branch1x1", x), branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
  conv_block: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, train: bool):
    conv = _block_conv(self.conv_block, train)
    branch3x3 = conv(320, 3, "branch3x3_2", conv(192, 1, "branch3x3_1", x), strides=2)
    branch7x7x3 = conv(192, 1, "branch7x7x3_1", x)
    branch7x7x3 = conv(192, (1, 7), "branch7x7x3_2", branch7x7x3)
    branch7x7x3 = conv(192, (7, 1), "branch7x7x3_3", branch7x7x3)
    branch7x7x3 = conv(192, 3, "branch7x7x3_4", branch7x7x3, strides=2)
    return jnp.concatenate([branch3x3, branch7x7x3, nn.max_pool(x, (3, 3), (2, 2))], axis=-1)


class InceptionE(nn.Module):
  conv_block: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, train: bool):
    conv = _block_conv(self.conv_block, train)
    # Each of the two 3x3 paths ends in a 1x3 and a 3x1 convolution side by side.
    split = lambda name, inputs: [conv(384, (1, 3), f"{name}a", inputs), conv(384, (3, 1), f"{name}b", inputs)]
    branch3x3 = split("branch3x3_2", conv(384, 1, "branch3x3_1", x))
    branch3x3dbl = split("branch3x3dbl_3", conv(384, 3, "branch3x3dbl_2", conv(448, 1, "branch3x3dbl_1", x)))
    branch_pool = conv(192, 1, "branch_pool", _avg_pool_3x3(x))
    return jnp.concatenate([conv(320, 1, "branch1x1", x), *branch3x3, *branch3x3dbl, branch_pool], axis=-1)


class InceptionAux(nn.Module):
  num_classes: int
  conv_block: Callable[..., nn.Module]
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    # torchvision's 5x5 stride-3 pooling turns the 17x17 grid of a 299 input into the 5x5 that
    # conv1 reduces to 1x1, and fails on smaller grids; those are pooled to 5x5 adaptively.
    x = nn.avg_pool(x, (5, 5), (3, 3)) if min(x.shape[1:3]) >= 17 else adaptive_avg_pool(x, 5)
    x = self.conv_block(128, 1, name="conv0")(x, train)
    x = self.conv_block(768, 5, kernel_init=torch_trunc_normal(0.01), name="conv1")(x, train)
    x = nn.Dense(self.num_classes, kernel_init=torch_trunc_normal(0.001), dtype=self.dtype, name="fc")(
      jnp.mean(x, axis=(1, 2))
    )
    sow_aux_logits(self, x)


# torchvision's count, with its auxiliary head, and its "GFLOPS".
@register("inception_v3", native_input=(299, 299, 3), params=27_161_264, multiply_adds=5.713, small=((75, 75, 3), {}))
class Inception3(AuxiliaryClassifiers, nn.Module):
  num_classes: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.5
  aux_heads: bool = True
  aux_loss_weight: float = 0.4

  def __post_init__(self):
    check_range("dropout_rate", self.dropout_rate, high=1)
    check_range("aux_loss_weight", self.aux_loss_weight)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    if min(x.shape[1:3]) < 75:  # Mixed_7a's unpadded stride-2 convolution needs a 3x3 grid
      raise ValueError(f"inception_v3 needs inputs of at least 75x75 (299 native), got {x.shape[1]}x{x.shape[2]}")
    conv = functools.partial(BasicConv, epsilon=1e-3, kernel_init=torch_trunc_normal(0.1), dtype=self.dtype)
    x = conv(32, 3, 2, name="Conv2d_1a_3x3")(x, train)
    x = conv(32, 3, name="Conv2d_2a_3x3")(x, train)
    x = conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x, train)
    x = nn.max_pool(x, (3, 3), (2, 2))
    x = conv(80, 1, name="Conv2d_3b_1x1")(x, train)
    x = conv(192, 3, name="Conv2d_4a_3x3")(x, train)
    x = nn.max_pool(x, (3, 3), (2, 2))
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
      x = InceptionA(pool_features, conv, name=name)(x, train)
    x = InceptionB(conv, name="Mixed_6a")(x, train)
    for name, channels_7x7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(channels_7x7, conv, name=name)(x, train)
    if self.wants_aux(train):
      InceptionAux(self.num_classes, conv, self.dtype, name="AuxLogits")(x, train)
    x = InceptionD(conv, name="Mixed_7a")(x, train)
    x = InceptionE(conv, name="Mixed_7b")(x, train)
    x = InceptionE(conv, name="Mixed_7c")(x, train)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
    return nn.Dense(self.num_classes, kernel_init=torch_trunc_normal(0.1), dtype=self.dtype, name="fc")(x)
