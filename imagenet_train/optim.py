"""Optimizers and learning-rate schedules built from a config.

Schedules are functions of the step, with epochs converted by `epochs_to_steps`. The
paper-era "divide by 10 when the validation error stops improving" cannot be a function of the
step, so it is an optax transformation whose state holds the current factor, the best metric
and the count of evaluations without improvement: it lives in the optimizer state, is
checkpointed with it, and is advanced on the host after each evaluation by `plateau_update`.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from imagenet_train.config.schema import epochs_to_steps
from imagenet_train.errors import UserError

SCHEDULES = ("constant", "steps", "exponential", "cosine", "plateau")


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  """Base learning rate, linear warm-up, then the configured decay, as a function of the step."""
  s = config.schedule
  base = config.learning_rate
  steps = functools.partial(epochs_to_steps, steps_per_epoch=steps_per_epoch)
  warmup = steps(s.warmup_epochs)
  if s.name not in SCHEDULES:
    raise UserError(f"unknown schedule {s.name!r}: use one of {', '.join(SCHEDULES)} in --config.schedule.name")
  if s.name in ("constant", "plateau"):
    decay = optax.constant_schedule(base)
  elif s.name == "steps":
    boundaries = {steps(epoch) - warmup: s.decay_factor for epoch in s.boundaries_epochs}
    decay = optax.piecewise_constant_schedule(base, boundaries)
  elif s.name == "exponential":
    decay = optax.exponential_decay(
      base, transition_steps=max(1, steps(s.decay_every_epochs)), decay_rate=s.decay_factor, staircase=True
    )
  else:
    decay = optax.cosine_decay_schedule(base, decay_steps=max(1, total_steps - warmup), alpha=s.final_fraction)
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(s.warmup_start_fraction * base, base, warmup), decay], [warmup])


class PlateauState(NamedTuple):
  plateau_factor: jax.Array  # multiplies the learning rate
  plateau_best: jax.Array
  plateau_bad_evals: jax.Array


def scale_by_plateau() -> optax.GradientTransformation:
  """Multiplies updates by the plateau factor that `plateau_update` sets between evaluations."""

  def init(params):
    del params
    return PlateauState(jnp.ones([], jnp.float32), jnp.full([], -jnp.inf, jnp.float32), jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: u * state.plateau_factor.astype(u.dtype), updates), state

  return optax.GradientTransformation(init, update)


def plateau_update(opt_state, metric: float, plateau: ml_collections.ConfigDict):
  """Host side: records an evaluation's metric (higher is better) and divides on a plateau."""
  current = optax.tree_utils.tree_get(opt_state, "plateau_factor")
  if current is None:
    return opt_state
  factor = float(current)
  best = float(optax.tree_utils.tree_get(opt_state, "plateau_best"))
  bad = int(optax.tree_utils.tree_get(opt_state, "plateau_bad_evals"))
  if metric > best + plateau.threshold:
    best, bad = metric, 0
  else:
    bad += 1
    if bad > plateau.patience:
      factor, bad = max(factor * plateau.factor, plateau.min_factor), 0
  put = lambda value, like: jax.device_put(jnp.asarray(value, like.dtype), like.sharding)
  return optax.tree_utils.tree_set(
    opt_state,
    plateau_factor=put(factor, optax.tree_utils.tree_get(opt_state, "plateau_factor")),
    plateau_best=put(best, optax.tree_utils.tree_get(opt_state, "plateau_best")),
    plateau_bad_evals=put(bad, optax.tree_utils.tree_get(opt_state, "plateau_bad_evals")),
  )


def learning_rate_factor(opt_state) -> jax.Array | float:
  factor = optax.tree_utils.tree_get(opt_state, "plateau_factor")
  return 1.0 if factor is None else factor


def _decay_mask(mode: str, exclude: tuple[str, ...]):
  """Which parameters weight decay touches: all of them under l2 (the papers decayed biases and
  BatchNorm too) but those named in `exclude` (the last part of a parameter's path: PReLU-net
  decayed no PReLU "slope"); decoupled decay also skips every parameter of rank < 2 (biases and
  BatchNorm)."""

  if mode == "l2" and not exclude:
    return None  # every parameter: optax keeps no mask state, the optimizer state earlier checkpoints hold

  def decayed(path, param) -> bool:
    if getattr(path[-1], "key", None) in exclude:
      return False
    return mode == "l2" or param.ndim > 1

  def mask(params):
    names = {getattr(path[-1], "key", None) for path, _ in jax.tree_util.tree_leaves_with_path(params)}
    unknown = sorted(set(exclude) - names)
    if unknown:  # a misspelt name would otherwise decay what the user meant to spare
      raise UserError(
        f"--config.optimizer.weight_decay_exclude names {', '.join(unknown)}, which no parameter "
        f"of this model is called: use some of {', '.join(sorted(map(str, names)))}"
      )
    return jax.tree_util.tree_map_with_path(decayed, params)

  return mask


def create_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int):
  """Returns (optax transformation, learning-rate schedule) for `config.optimizer`: the shared fields
  from the block itself, the optimizer's own from its sub-block (`optimizer.sgd`, `.adam`, `.rmsprop`)."""
  o = config.optimizer
  schedule = learning_rate_schedule(config, steps_per_epoch, total_steps)
  if o.weight_decay_mode not in ("l2", "decoupled"):
    raise UserError(
      f"unknown weight_decay_mode {o.weight_decay_mode!r}: use 'l2' (added to every weight's "
      "gradient, as the papers did) or 'decoupled' (BatchNorm and biases excluded)"
    )
  if o.name == "sgd":
    direction = [optax.trace(decay=o.sgd.momentum, nesterov=o.sgd.nesterov)] if o.sgd.momentum else []
  elif o.name == "adam":
    direction = [optax.scale_by_adam(b1=o.adam.b1, b2=o.adam.b2, eps=o.adam.eps)]
  elif o.name == "rmsprop":
    direction = [optax.scale_by_rms(decay=o.rmsprop.decay, eps=o.rmsprop.eps, eps_in_sqrt=False)]
    direction += [optax.trace(decay=o.rmsprop.momentum)] if o.rmsprop.momentum else []
  else:
    raise UserError(f"unknown optimizer {o.name!r}: use sgd, adam or rmsprop in --config.optimizer.name")
  chain = []
  mask = _decay_mask(o.weight_decay_mode, tuple(o.weight_decay_exclude))
  if o.weight_decay and o.weight_decay_mode == "l2":
    chain.append(optax.add_decayed_weights(o.weight_decay, mask=mask))
  if o.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(o.grad_clip_norm))
  chain += direction
  if o.weight_decay and o.weight_decay_mode == "decoupled":
    chain.append(optax.add_decayed_weights(o.weight_decay, mask=mask))
  chain.append(optax.scale_by_learning_rate(schedule))
  if config.schedule.name == "plateau":
    chain.append(scale_by_plateau())
  return optax.chain(*chain), schedule
