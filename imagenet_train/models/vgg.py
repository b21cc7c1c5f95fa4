"""VGG (Simonyan and Zisserman, 2014): configurations A, A-LRN, B, C, D and E of Table 1.

All convolutions are 3x3 (C adds 1x1 convolutions at the end of blocks 3 to 5), five 2x2
max poolings, and a head of FC-4096, FC-4096 and the classifier with dropout 0.5 after the
first two. The head is held as convolutions (7x7, then 1x1, 1x1) with the same parameters as
the fully connected layers: on a 224x224 input it is exactly the FC head, and on a larger
image it gives the paper's dense evaluation, a class score map averaged over space.
`batch_norm=True` adds BatchNorm after every convolution (torchvision's vgg*_bn).

For 28-32 pixel inputs (Fashion-MNIST, CIFAR), `small_input=True` makes two changes, as the
CIFAR VGGs do: the poolings round up (Caffe's and torch's ceil mode), so that a 28x28 image
ends in a 1x1 map (28, 14, 7, 4, 2, 1) instead of vanishing at the fifth pooling, and the
head's first convolution is 1x1 instead of 7x7, the fully connected layer that map needs.
`width_multiplier` scales every convolution, the head's included. The defaults are the paper's
networks.
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import register
from imagenet_train.models.layers import local_response_norm, max_pool_ceil

# Per block: the output widths of its convolutions; a (width, 1) pair is a 1x1 convolution.
_CONFIGS = {
  "a": [[64], [128], [256, 256], [512, 512], [512, 512]],
  "a_lrn": [[64], [128], [256, 256], [512, 512], [512, 512]],
  "b": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
  "c": [[64, 64], [128, 128], [256, 256, (256, 1)], [512, 512, (512, 1)], [512, 512, (512, 1)]],
  "d": [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3],
  "e": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


class VGG(nn.Module):
  num_classes: int
  blocks: Sequence[Sequence[Any]]  # the architecture, fixed by each registration
  lrn: bool
  batch_norm: bool
  dtype: Any = jnp.float32
  dropout_rate: float = 0.5
  width_multiplier: float = 1.0  # below 1 for quick tests and CPU-sized small-input runs
  small_input: bool = False  # ceil-mode poolings and a 1x1 head for 28-32 pixel inputs

  @nn.compact
  def __call__(self, x, *, train: bool):
    if not self.small_input and min(x.shape[1:3]) < 224:
      raise ValueError(
        f"VGG needs inputs of at least 224x224 (small_input=True takes 28-32 pixels), got {x.shape[1]}x{x.shape[2]}"
      )
    width = lambda features: max(1, int(features * self.width_multiplier))
    init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's kaiming_normal_
    conv = functools.partial(nn.Conv, dtype=self.dtype, kernel_init=init)
    # Layers are named by their index in torchvision's `features` and `classifier` sequences, in
    # which every convolution, BatchNorm, ReLU and pooling takes one place, so that torchvision's
    # state_dicts map onto these variables by name.
    index = 0
    for block_index, block in enumerate(self.blocks):
      for layer_index, layer in enumerate(block):
        features, kernel = layer if isinstance(layer, tuple) else (layer, 3)
        x = conv(width(features), (kernel, kernel), padding="SAME", name=f"features.{index}")(x)
        if self.batch_norm:
          x = nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name=f"features.{index + 1}"
          )(x)
        x = nn.relu(x)
        index += 3 if self.batch_norm else 2
        if self.lrn and block_index == 0 and layer_index == 0:
          x = local_response_norm(x)
          index += 1
      # At 224 every map is even and the two roundings agree.
      x = max_pool_ceil(x, 2, 2) if self.small_input else nn.max_pool(x, (2, 2), strides=(2, 2))
      index += 1
    head = functools.partial(nn.Conv, dtype=self.dtype, padding="VALID", kernel_init=nn.initializers.normal(0.01))
    head_kernel = 1 if self.small_input else 7
    x = nn.relu(head(width(4096), (head_kernel, head_kernel), name="classifier.0")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.relu(head(width(4096), (1, 1), name="classifier.3")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    scores = head(self.num_classes, (1, 1), name="classifier.6")(x)
    return scores.mean(axis=(1, 2))


# Per configuration: its parameters at 224 with 1000 classes, those of its _bn variant
# (torchvision's vgg*_bn: two BatchNorm parameters per convolution channel), and the multiply-adds
# of both (G; counted from the traced program by models.counting, as torchvision's "GFLOPS" count them).
_FIGURES = {
  "a": (132_863_336, 132_868_840, 7.609),
  "a_lrn": (132_863_336, None, 7.609),
  "b": (133_047_848, 133_053_736, 11.308),
  "c": (133_638_952, 133_647_400, 11.771),
  "d": (138_357_544, 138_365_992, 15.470),
  "e": (143_667_240, 143_678_248, 19.632),
}
_SMALL = ((224, 224, 3), {"width_multiplier": 1 / 64})
for _config, (_params, _bn_params, _multiply_adds) in _FIGURES.items():
  _vgg = functools.partial(VGG, blocks=_CONFIGS[_config], lrn=_config == "a_lrn")
  register(f"vgg_{_config}", params=_params, multiply_adds=_multiply_adds, small=_SMALL)(
    functools.partial(_vgg, batch_norm=False)
  )
  if _bn_params:
    register(f"vgg_{_config}_bn", params=_bn_params, multiply_adds=_multiply_adds, small=_SMALL)(
      functools.partial(_vgg, batch_norm=True)
    )
