"""GoogLeNet (Szegedy et al., 2014, "Going Deeper with Convolutions") and torchvision's variant.

`googlenet` is Table 1 of the paper as Caffe's bvlc_googlenet trains it: convolutions with
biases and ReLU and no normalisation but two cross-channel LRNs in the stem, nine Inception
modules with 5x5 branches, 3x3 stride-2 max pooling with Caffe's rounding up (so 112, 56, 28,
14 and 7 at 224), a global average, dropout 0.4 and the classifier. Caffe's fillers: Xavier
weights, biases 0.2 except in the classifiers. 6,998,552 parameters without the auxiliary
heads, 13,378,280 with them.

`googlenet_torchvision` is torchvision's `googlenet`, with its module names: BatchNorm (eps
1e-3) after every bias-free convolution, no LRN, a 3x3 convolution where the paper has 5x5
(vision#906), 2x2 pooling before stage 5, dropout 0.2 and truncated-normal weights. 6,624,904
parameters without the auxiliary heads, 13,004,888 with them.

Both attach the paper's auxiliary classifiers to 4a and 4d ("aux1", "aux2"): 4x4 average
pooling, a 1x1 convolution to 128, FC 1024, dropout 0.7 and a classifier, weighted 0.3 in the
loss. They run while training (and at init, so that their parameters exist), report their
logits in the "aux_logits" collection, and are left out with `aux_heads=False`.

For 28-32 pixel inputs (Fashion-MNIST, CIFAR), both take `stem="small"`: conv1 becomes a 3x3
stride-1 convolution and the max pooling after it goes, so that the stem shrinks a 28x28 image
by 2 instead of 8 (which would leave 3x3 for Inception 3 and 1x1 for Inceptions 4 and 5): the
three Inception stages then see 14, 7 and 4 pixels (3 after the paper's 3x3 pooling), the grids
of a 112-pixel image, where the CIFAR GoogLeNets drop the stem's second pooling too and see 28,
14 and 7 at four times the cost. The auxiliary heads pool their 7x7 grid to 4x4 adaptively.
`width_multiplier` scales every convolution's width and the auxiliary heads' FC layers. The
defaults are the ImageNet networks.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import check_choice, check_range, register
from imagenet_train.models.layers import (
  AuxiliaryClassifiers,
  BasicConv,
  adaptive_avg_pool,
  flatten_channel_major,
  local_response_norm,
  max_pool_ceil,
  sow_aux_logits,
  torch_trunc_normal,
)

# Table 1: 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection.
_TABLE_1 = {
  "3a": (64, 96, 128, 16, 32, 32),
  "3b": (128, 128, 192, 32, 96, 64),
  "4a": (192, 96, 208, 16, 48, 64),
  "4b": (160, 112, 224, 24, 64, 64),
  "4c": (128, 128, 256, 24, 64, 64),
  "4d": (112, 144, 288, 32, 64, 64),
  "4e": (256, 160, 320, 32, 128, 128),
  "5a": (256, 160, 320, 32, 128, 128),
  "5b": (384, 192, 384, 48, 128, 128),
}
_POOL_AFTER = ("3b", "4e")
_AUX_AFTER = {"4a": "aux1", "4d": "aux2"}

# Caffe's "xavier" filler: uniform with variance 1/fan_in.
_caffe_xavier = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def _caffe_lrn(x):
  # bvlc_googlenet's LRN has size 5, alpha 1e-4, beta 0.75 and k 1; Caffe divides alpha by the
  # size inside the sum, local_response_norm does not, so it gets alpha / 5.
  return local_response_norm(x, size=5, k=1.0, alpha=1e-4 / 5, beta=0.75)


def _paper_aux_pool(x):
  # The paper's 5x5 stride-3 average pooling turns the 14x14 grid of a 224 input into 4x4. On
  # other grids it would not, and fc1's input (so the checkpoint) would change with the image
  # size; those are pooled to 4x4 adaptively instead.
  if x.shape[1:3] == (14, 14):
    return nn.avg_pool(x, (5, 5), (3, 3))
  return adaptive_avg_pool(x, 4)


class Inception(nn.Module):
  widths: Sequence[int]  # a row of _TABLE_1
  conv_block: Callable[..., nn.Module]
  large_kernel: int  # the "5x5" branch's kernel: 5 in the paper, 3 in torchvision

  @nn.compact
  def __call__(self, x, train: bool):
    ones, reduce3, conv3, reduce5, conv5, proj = self.widths
    conv = self.conv_block
    k = self.large_kernel
    branches = [
      conv(ones, 1, name="branch1")(x, train),
      conv(conv3, 3, padding=1, name="branch2.1")(conv(reduce3, 1, name="branch2.0")(x, train), train),
      conv(conv5, k, padding=k // 2, name="branch3.1")(conv(reduce5, 1, name="branch3.0")(x, train), train),
      # torchvision's branch4 is Sequential(MaxPool2d, conv): the conv is its item 1.
      conv(proj, 1, name="branch4.1")(nn.max_pool(x, (3, 3), padding=((1, 1), (1, 1))), train),
    ]
    return jnp.concatenate(branches, axis=-1)


class InceptionAux(nn.Module):
  num_classes: int
  conv_block: Callable[..., nn.Module]
  dense: Callable[..., nn.Module]
  pool: Callable  # to 4x4: fc1 reads 128 * 4 * 4 features
  dropout_rate: float
  hidden_bias_init: Callable
  width: Callable[[int], int]  # the network's width multiplier applied to a width

  @nn.compact
  def __call__(self, x, train: bool):
    x = flatten_channel_major(self.conv_block(self.width(128), 1, name="conv")(self.pool(x), train))
    x = nn.relu(self.dense(self.width(1024), bias_init=self.hidden_bias_init, name="fc1")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    sow_aux_logits(self, self.dense(self.num_classes, name="fc2")(x))


class GoogLeNet(AuxiliaryClassifiers, nn.Module):
  num_classes: int
  torchvision: bool  # the architecture, fixed by each registration
  dtype: Any = jnp.float32
  dropout_rate: float = 0.4
  aux_dropout_rate: float = 0.7
  aux_heads: bool = True
  aux_loss_weight: float = 0.3
  stem: str = "imagenet"  # small: a 3x3 stride-1 conv1 and no pooling after it, for 28-32 pixel inputs
  width_multiplier: float = 1.0

  def __post_init__(self):
    check_range("dropout_rate", self.dropout_rate, high=1)
    check_range("aux_dropout_rate", self.aux_dropout_rate, high=1)
    check_range("aux_loss_weight", self.aux_loss_weight)
    check_choice("stem", self.stem, ("imagenet", "small"))
    check_range("width_multiplier", self.width_multiplier, low_open=True)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    small = self.stem == "small"
    minimum = 8 if small else 32  # three (small) or five stride-2 stages: the last maps are then 1x1
    if min(x.shape[1:3]) < minimum:
      raise ValueError(
        f"GoogLeNet with the {self.stem} stem needs inputs of at least {minimum}x{minimum} "
        f"(224 native), got {x.shape[1]}x{x.shape[2]}"
      )
    width = lambda features: max(1, int(features * self.width_multiplier))
    if self.torchvision:
      init = torch_trunc_normal(0.01)
      conv = functools.partial(BasicConv, epsilon=1e-3, kernel_init=init, dtype=self.dtype)
      dense = functools.partial(nn.Dense, kernel_init=init, dtype=self.dtype)
      hidden_bias_init, aux_pool = nn.initializers.zeros, functools.partial(adaptive_avg_pool, size=4)
    else:
      hidden_bias_init = nn.initializers.constant(0.2)
      conv = functools.partial(
        BasicConv, epsilon=None, kernel_init=_caffe_xavier, bias_init=hidden_bias_init, dtype=self.dtype
      )
      dense = functools.partial(nn.Dense, kernel_init=_caffe_xavier, dtype=self.dtype)
      aux_pool = _paper_aux_pool
    if small:
      x = conv(width(64), 3, padding=1, name="conv1")(x, train)
    else:
      x = max_pool_ceil(conv(width(64), 7, 2, 3, name="conv1")(x, train), 3, 2)
    if not self.torchvision:
      x = _caffe_lrn(x)
    x = conv(width(192), 3, padding=1, name="conv3")(conv(width(64), 1, name="conv2")(x, train), train)
    if not self.torchvision:
      x = _caffe_lrn(x)
    x = max_pool_ceil(x, 3, 2)
    for module, widths in _TABLE_1.items():
      x = Inception(
        tuple(map(width, widths)), conv, large_kernel=3 if self.torchvision else 5, name=f"inception{module}"
      )(x, train)
      if module in _AUX_AFTER and self.wants_aux(train):
        InceptionAux(
          self.num_classes,
          conv,
          dense,
          aux_pool,
          self.aux_dropout_rate,
          hidden_bias_init,
          width,
          name=_AUX_AFTER[module],
        )(x, train)
      if module in _POOL_AFTER:
        x = max_pool_ceil(x, 2 if self.torchvision and module == "4e" else 3, 2)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
    return dense(self.num_classes, name="fc")(x)


# Counts at 224 with 1000 classes, auxiliary heads included: the two heads hold 6,379,728
# parameters; without them 6,998,552 (paper "about 7M") and torchvision's 6,624,904. Multiply-adds
# without the heads: counted by models.counting, as torchvision's "GFLOPS" count them.
register("googlenet", params=13_378_280, multiply_adds=1.58, small=((32, 32, 3), {}))(
  functools.partial(GoogLeNet, torchvision=False)
)
register(
  "googlenet_torchvision",
  params=13_004_888,
  multiply_adds=1.498,
  small=((32, 32, 3), {}),
  defaults=dict(dropout_rate=0.2),
)(functools.partial(GoogLeNet, torchvision=True))
