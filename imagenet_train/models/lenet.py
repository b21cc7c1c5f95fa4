"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998), where this lineage starts.

The paper's network reads 32x32 images: C1 (6 maps, 5x5), S2 (2x2 pooling), C3 (16 maps,
5x5), S4, C5 (120 maps, 5x5, which on a 5x5 input is a fully connected layer), F6 (84) and
the output layer. 28x28 inputs (MNIST, Fashion-MNIST) are zero-padded to 32x32, as the paper
did with MNIST. The paper's C3 partial connection table and RBF output are replaced by full
connections and a linear layer, as every modern reimplementation does; the activation (the
paper's scaled tanh, or ReLU) and the pooling (the paper's trainable average, or max) are
options.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imagenet_train.models import check_choice, register

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


# Multiply-adds by hand: 117,600 + 240,000 + 48,000 + 10,080 + 840.
@register(
  "lenet5",
  native_input=(32, 32, 1),
  native_classes=10,
  params=61_706,
  multiply_adds=416_520e-9,
  small=((28, 28, 1), {}),
)
class LeNet5(nn.Module):
  num_classes: int
  dtype: Any = jnp.float32
  activation: str = "tanh"
  pooling: str = "avg"
  dropout_rate: float = 0.0

  def __post_init__(self):
    check_choice("activation", self.activation, sorted(_ACTIVATIONS))
    check_choice("pooling", self.pooling, ("avg", "max"))
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    height, width = x.shape[1:3]
    if min(height, width) < 28:
      raise ValueError(f"LeNet-5 needs inputs of at least 28x28, got {height}x{width}")
    if height < 32 or width < 32:
      pad_h, pad_w = max(0, 32 - height), max(0, 32 - width)
      x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    act = _ACTIVATIONS[self.activation]
    pool = nn.avg_pool if self.pooling == "avg" else nn.max_pool
    conv = lambda features, name: nn.Conv(features, (5, 5), padding="VALID", dtype=self.dtype, name=name)
    x = act(conv(6, "c1")(x))
    x = pool(x, (2, 2), strides=(2, 2))
    x = act(conv(16, "c3")(x))
    x = pool(x, (2, 2), strides=(2, 2))
    x = act(conv(120, "c5")(x))
    x = x.reshape(x.shape[0], -1)
    x = act(nn.Dense(84, dtype=self.dtype, name="f6")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="output")(x)
