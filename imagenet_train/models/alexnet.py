"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012) and torchvision's single-column variant.

`alexnet` is the NIPS 2012 network: 227x227 input (the arithmetic of "224" with 55x55 conv1
maps needs 227), two towers expressed as grouped conv2, conv4 and conv5, local response
normalisation (k=2, n=5, alpha=1e-4, beta=0.75) after the ReLUs of conv1 and conv2, overlapping
3x3 stride-2 max pooling, dropout 0.5 on FC6 and FC7, weights from N(0, 0.01) and biases of 1
in conv2, conv4, conv5 and the hidden FC layers. 60,965,224 parameters. `split_towers=True`
with `config.model_parallelism=2` puts the towers on two devices, as the paper did.

`alexnet_torchvision` follows "One weird trick" (Krizhevsky, 2014) as torchvision ships it:
widths 64-192-384-256-256, no grouping, no LRN, adaptive 6x6 average pooling, dropout before
FC6 and FC7. 61,100,840 parameters. Its layers carry torchvision's names (`features.0`,
`classifier.1`, ...) so that torchvision's weights import by name.

For 28-32 pixel inputs (Fashion-MNIST, CIFAR), `alexnet` takes `stem="small"`: conv1 becomes a
3x3 stride-1 convolution, since the 11x11 stride-4 one would leave a 28x28 image 5x5 before its
first pooling and nothing after the second; the three poolings then leave 13, 6 and 2 pixels,
and FC6 reads the final 2x2 map as it is instead of pooling it to the 6x6 the 227 input gives.
`width_multiplier` scales every hidden layer's width, FC6 and FC7 included (kept a multiple of
the tower count). `initializer="he"` replaces the paper's N(0, 0.01) weights and biases of 1 by
He et al.'s N(0, 2 / fan-in) and biases of 0: an eighth-width network from the paper's
initialisation was still at chance after 200 steps on Fashion-MNIST, its small fan-ins leaving
the input's signal faint beside the biases of 1. The defaults are the paper's network.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import check_choice, check_range, register
from imagenet_train.models.layers import adaptive_avg_pool, flatten_channel_major, local_response_norm
from imagenet_train.sharding import MODEL_AXIS

_paper_init = nn.initializers.normal(0.01)
_he_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


@register("alexnet", native_input=(227, 227, 3), params=60_965_224, multiply_adds=0.724, small=((67, 67, 3), {}))
class AlexNet(nn.Module):
  num_classes: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.5
  towers: int = 2  # 1 removes the grouping (the paper's one-GPU comparison keeps full widths)
  # Splits every layer's output units but the classifier's over the mesh's model axis, as the
  # paper split them over its two GPUs: with two devices on that axis each holds one tower.
  split_towers: bool = False
  stem: str = "imagenet"  # small: a 3x3 stride-1 conv1 for 28-32 pixel inputs
  width_multiplier: float = 1.0
  initializer: str = "paper"  # he: N(0, 2 / fan-in) weights and biases of 0, for narrow networks

  def __post_init__(self):
    check_choice("towers", self.towers, (1, 2))
    check_choice("stem", self.stem, ("imagenet", "small"))
    check_range("width_multiplier", self.width_multiplier, low_open=True)
    check_choice("initializer", self.initializer, ("paper", "he"))
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    small = self.stem == "small"
    minimum = 15 if small else 67  # the third pooling needs a 3x3 conv5 map
    if min(x.shape[1:3]) < minimum:
      raise ValueError(
        f"AlexNet with the {self.stem} stem needs inputs of at least {minimum}x{minimum} "
        f"(227 native), got {x.shape[1]}x{x.shape[2]}"
      )
    split = lambda init, rank: (
      nn.with_partitioning(init, (None,) * (rank - 1) + (MODEL_AXIS,)) if (self.split_towers) else init
    )
    zeros = nn.initializers.zeros
    # The paper's biases of 1 in conv2, conv4, conv5, FC6 and FC7 kept their ReLUs active at the start.
    paper = self.initializer == "paper"
    kernel_init, hidden_bias_init = (_paper_init, nn.initializers.ones) if paper else (_he_init, zeros)

    def conv(features, kernel, *args, bias_init=zeros, **kwargs):
      return nn.Conv(
        features,
        kernel,
        *args,
        dtype=self.dtype,
        kernel_init=split(kernel_init, 4),
        bias_init=split(bias_init, 1),
        **kwargs,
      )

    def dense(features, bias_init=zeros, **kwargs):
      return nn.Dense(
        features, dtype=self.dtype, kernel_init=split(kernel_init, 2), bias_init=split(bias_init, 1), **kwargs
      )

    # Whole multiples of the tower count, so that the towers (groups) stay equal.
    width = lambda features: max(1, int(features * self.width_multiplier) // self.towers) * self.towers
    pool = functools.partial(nn.max_pool, window_shape=(3, 3), strides=(2, 2))
    lrn = functools.partial(local_response_norm, groups=self.towers)
    if small:
      x = conv(width(96), (3, 3), padding=1, name="conv1")(x)
    else:
      x = conv(width(96), (11, 11), 4, padding="VALID", name="conv1")(x)
    x = pool(lrn(nn.relu(x)))
    grouped = functools.partial(conv, feature_group_count=self.towers, bias_init=hidden_bias_init)
    x = pool(lrn(nn.relu(grouped(width(256), (5, 5), padding=2, name="conv2")(x))))
    x = nn.relu(conv(width(384), (3, 3), padding=1, name="conv3")(x))
    x = nn.relu(grouped(width(384), (3, 3), padding=1, name="conv4")(x))
    x = pool(nn.relu(grouped(width(256), (3, 3), padding=1, name="conv5")(x)))
    # torchvision's AdaptiveAvgPool2d(6), flattened as torch flattens: at 227 the map is 6x6 already.
    x = x.reshape(x.shape[0], -1) if small else flatten_channel_major(adaptive_avg_pool(x, 6))
    dropout = functools.partial(nn.Dropout, self.dropout_rate, deterministic=not train)
    x = dropout()(nn.relu(dense(width(4096), bias_init=hidden_bias_init, name="fc6")(x)))
    x = dropout()(nn.relu(dense(width(4096), bias_init=hidden_bias_init, name="fc7")(x)))
    return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=_paper_init, name="fc8")(x)


@register("alexnet_torchvision", params=61_100_840, multiply_adds=0.714, small=((63, 63, 3), {}))
class AlexNetTorchvision(nn.Module):
  num_classes: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x, *, train: bool):
    if min(x.shape[1:3]) < 63:
      raise ValueError(
        f"alexnet_torchvision needs inputs of at least 63x63 (224 native), got {x.shape[1]}x{x.shape[2]}"
      )
    conv = functools.partial(nn.Conv, dtype=self.dtype)
    pool = functools.partial(nn.max_pool, window_shape=(3, 3), strides=(2, 2))
    x = pool(nn.relu(conv(64, (11, 11), 4, padding=2, name="features.0")(x)))
    x = pool(nn.relu(conv(192, (5, 5), padding=2, name="features.3")(x)))
    x = nn.relu(conv(384, (3, 3), padding=1, name="features.6")(x))
    x = nn.relu(conv(256, (3, 3), padding=1, name="features.8")(x))
    x = pool(nn.relu(conv(256, (3, 3), padding=1, name="features.10")(x)))
    x = flatten_channel_major(adaptive_avg_pool(x, 6))
    dense = functools.partial(nn.Dense, dtype=self.dtype)
    x = nn.relu(dense(4096, name="classifier.1")(nn.Dropout(self.dropout_rate, deterministic=not train)(x)))
    x = nn.relu(dense(4096, name="classifier.4")(nn.Dropout(self.dropout_rate, deterministic=not train)(x)))
    return dense(self.num_classes, name="classifier.6")(x)
