"""Layers that several families share and Flax does not provide."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def local_response_norm(x, *, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75,
                        groups: int = 1):
  """Krizhevsky et al.'s cross-channel normalisation, b = a / (k + alpha * sum a^2)^beta.

  The sum runs over `size` adjacent channels centred on each one, as in the AlexNet paper's
  formula (alpha is not divided by `size`, unlike Caffe's). With `groups` > 1 each group of
  channels is normalised on its own, as each of AlexNet's two GPUs normalised its own maps.
  """
  squares = jnp.square(x.astype(jnp.float32))
  *batch_dims, channels = x.shape
  squares = squares.reshape(*batch_dims, groups, channels // groups)
  window = (1,) * (squares.ndim - 1) + (size,)
  padding = ((0, 0),) * (squares.ndim - 1) + ((size // 2, (size - 1) // 2),)
  sums = jax.lax.reduce_window(squares, 0.0, jax.lax.add, window, (1,) * squares.ndim, padding)
  scale = jnp.power(k + alpha * sums.reshape(x.shape), -beta)
  return (x * scale).astype(x.dtype)


class PReLU(nn.Module):
  """He et al. (2015)'s parametric ReLU: a learned slope for negative inputs, per channel
  (their default) or one for the whole layer (`channel_shared`), initialised at 0.25."""

  channel_shared: bool = False

  @nn.compact
  def __call__(self, x):
    shape = () if self.channel_shared else (x.shape[-1],)
    slope = self.param("slope", nn.initializers.constant(0.25), shape, jnp.float32)
    return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


class SqueezeExcitation(nn.Module):
  """Hu et al. (2017): global average pool, FC to C/r, ReLU, FC back to C, sigmoid, rescale."""

  reduction: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2))
    s = nn.relu(nn.Dense(channels // self.reduction, dtype=self.dtype, name="reduce")(s))
    s = nn.sigmoid(nn.Dense(channels, dtype=self.dtype, name="expand")(s))
    return x * s[:, None, None, :]
