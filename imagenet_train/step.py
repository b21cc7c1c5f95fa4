"""The loss and the train step: a pure function of the state and a global batch, jitted over the mesh."""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from imagenet_train import metrics as metrics_lib
from imagenet_train import models, optim, sharding
from imagenet_train.state import Setup, TrainState, compute_dtype, update_averages


@dataclasses.dataclass(frozen=True)
class StepOptions:
  """What a train step needs beside the state and the batch; static under jit."""

  model: Any
  tx: Any
  schedule: Callable
  num_classes: int
  label_smoothing: float
  dtype: Any
  seed: int
  device_normalize: tuple | None = None  # (mean, std) of a final normalize the pipeline left to the device
  ema_decay: float = 0.0
  polyak_start_step: int = 0

  @classmethod
  def from_setup(cls, setup: Setup) -> "StepOptions":
    c = setup.config
    return cls(
      model=setup.model,
      tx=setup.tx,
      schedule=setup.schedule,
      num_classes=setup.info.num_classes,
      label_smoothing=c.label_smoothing,
      dtype=compute_dtype(c),
      seed=c.seed,
      device_normalize=setup.info.device_normalize,
      ema_decay=c.averaging.ema_decay,
      polyak_start_step=setup.steps(c.averaging.polyak_start_epochs),
    )


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float):
  """Labels are class indices, smoothed here, or target distributions (the `onehot` op's,
  already smoothed by the pipeline), used as they are."""
  if labels.ndim == logits.ndim:
    targets = labels.astype(jnp.float32)
  else:
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def model_input(images: jax.Array, dtype, device_normalize: tuple | None) -> jax.Array:
  """The batch's images in the compute dtype, normalised here when the pipeline left that to the device."""
  if device_normalize is not None:
    mean, std = (jnp.asarray(stat, jnp.float32) for stat in device_normalize)
    images = (images.astype(jnp.float32) / 255.0 - mean) / std
  return images.astype(dtype)


def train_step(state: TrainState, batch: dict, options: StepOptions):
  """One SGD step on a global batch; BatchNorm statistics span the whole global batch."""
  o = options
  dropout_key = jax.random.fold_in(jax.random.key(o.seed), state.step)

  def loss_fn(params):
    logits, auxiliary, batch_stats = models.train_forward(
      o.model,
      {"params": params, "batch_stats": state.batch_stats},
      model_input(batch["image"], o.dtype, o.device_normalize),
      rngs={"dropout": dropout_key},
    )
    losses = cross_entropy(logits, batch["label"], o.num_classes, o.label_smoothing)
    # Auxiliary classifiers (GoogLeNet, Inception-v3) add their weighted losses to the objective,
    # while the reported metrics stay those of the main classifier.
    loss = losses.mean() + sum(
      weight * cross_entropy(aux, batch["label"], o.num_classes, o.label_smoothing).mean() for weight, aux in auxiliary
    )
    return loss, (logits, losses, batch_stats)

  (loss, (logits, losses, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = o.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  # A finite loss can still give an overflowing update; either makes the new state unusable.
  finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(updates))
  nonfinite_step = jnp.where((state.nonfinite_step < 0) & ~finite, state.step, state.nonfinite_step)
  averages = update_averages(
    state.averages,
    {"params": params, "batch_stats": batch_stats},
    state.step + 1,
    ema_decay=o.ema_decay,
    polyak_start_step=o.polyak_start_step,
  )
  new_state = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats=batch_stats,
    opt_state=opt_state,
    averages=averages,
    nonfinite_step=nonfinite_step,
  )
  step_metrics = metrics_lib.classification_metrics(logits, batch["label"], losses)
  learning_rate = o.schedule(state.step) * optim.learning_rate_factor(state.opt_state)
  return new_state, step_metrics, learning_rate


def jit_train_step(setup: Setup):
  """`train_step` for `setup`, jitted over its mesh: (state, global batch) -> (state, metrics, learning rate)."""
  options = StepOptions.from_setup(setup)
  replicated = sharding.replicated(setup.mesh)
  return jax.jit(
    lambda state, batch: train_step(state, batch, options),
    in_shardings=(setup.state_sharding, sharding.batch_sharding(setup.mesh)),
    out_shardings=(setup.state_sharding, replicated, replicated),
    donate_argnums=0,
  )
