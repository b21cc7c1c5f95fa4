"""Learning-rate schedules, the plateau rule and both kinds of weight decay."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imagenet_train import optim
from imagenet_train.defaults import base_config
from imagenet_train.errors import UserError


def schedule_config(**schedule):
  config = base_config()
  config.learning_rate = 0.1
  config.schedule.update(schedule)
  return config


def test_steps_schedule_divides_at_the_given_epochs():
  config = schedule_config(name="steps", boundaries_epochs=(2, 3), decay_factor=0.1)
  lr = optim.learning_rate_schedule(config, steps_per_epoch=10, total_steps=40)
  np.testing.assert_allclose([lr(0), lr(19), lr(20), lr(29), lr(30), lr(39)], [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3],
                             rtol=1e-6)


def test_exponential_schedule_is_googlenets_staircase():
  config = schedule_config(name="exponential", decay_every_epochs=8, decay_factor=0.96)
  lr = optim.learning_rate_schedule(config, steps_per_epoch=5, total_steps=1000)
  np.testing.assert_allclose([lr(0), lr(39), lr(40), lr(80)], [0.1, 0.1, 0.096, 0.1 * 0.96**2], rtol=1e-6)


def test_warmup_then_cosine():
  config = schedule_config(name="cosine", warmup_epochs=1)
  lr = optim.learning_rate_schedule(config, steps_per_epoch=10, total_steps=110)
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(60), lr(110)], [0.0, 0.05, 0.1, 0.05, 0.0], atol=1e-7)


def test_plateau_divides_by_ten_after_patience_runs_out():
  config = schedule_config(name="plateau")
  config.schedule.plateau.patience = 1
  tx, _ = optim.create_optimizer(config, steps_per_epoch=10, total_steps=100)
  state = tx.init({"w": jnp.ones(3)})
  factors = []
  for top1 in (0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7):
    state = optim.plateau_update(state, top1, config.schedule.plateau)
    factors.append(float(optim.learning_rate_factor(state)))
  np.testing.assert_allclose(factors, [1, 1, 1, 0.1, 0.1, 0.1, 0.01], rtol=1e-6)
  # The factor scales the applied update: learning rate x factor x (gradient + L2 decay).
  updates, _ = tx.update({"w": jnp.ones(3)}, state, {"w": jnp.ones(3)})
  np.testing.assert_allclose(updates["w"], -0.1 * 0.01 * (1 + 1e-4) * np.ones(3), rtol=1e-5)


def decay_only(mode: str, exclude: tuple[str, ...] = ()):
  """An optimizer whose updates, for zero gradients, are -0.1 x 0.5 x each decayed parameter."""
  config = schedule_config(name="constant")
  config.optimizer.momentum = 0.0
  config.optimizer.weight_decay = 0.5
  config.optimizer.weight_decay_mode = mode
  config.optimizer.weight_decay_exclude = exclude
  return optim.create_optimizer(config, steps_per_epoch=1, total_steps=1)[0]


def zero_grad_updates(tx, params):
  return tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)[0]


@pytest.mark.parametrize("mode", ["l2", "decoupled"])
def test_weight_decay_modes(mode):
  updates = zero_grad_updates(decay_only(mode), {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)})
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
  # The papers decayed every weight; decoupled decay leaves biases (and BatchNorm) alone.
  np.testing.assert_allclose(updates["bias"], (-0.05 if mode == "l2" else 0.0) * np.ones(2), rtol=1e-6)


@pytest.mark.parametrize("mode", ["l2", "decoupled"])
def test_weight_decay_skips_excluded_names(mode):
  # Slopes beside a kernel, one of rank 2 (which decoupled decay's rank rule alone would decay)
  # and one shared slope of rank 0.
  params = {"conv1": {"kernel": jnp.ones((2, 2))}, "prelu1": {"slope": jnp.ones((2, 2))},
            "prelu2": {"slope": jnp.ones(())}}
  updates = zero_grad_updates(decay_only(mode, exclude=("slope",)), params)
  np.testing.assert_allclose(updates["conv1"]["kernel"], -0.05 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_array_equal(updates["prelu1"]["slope"], np.zeros((2, 2)))
  np.testing.assert_array_equal(updates["prelu2"]["slope"], np.zeros(()))
  with pytest.raises(UserError, match="names slopes, which no parameter of this model is called: use some of "
                                      "kernel, slope"):
    decay_only(mode, exclude=("slopes",)).init(params)


def test_unknown_schedule_and_optimizer_are_user_errors():
  with pytest.raises(UserError, match="unknown schedule"):
    optim.learning_rate_schedule(schedule_config(name="linear"), 10, 100)
  config = schedule_config()
  config.optimizer.name = "lamb"
  with pytest.raises(UserError, match="unknown optimizer"):
    optim.create_optimizer(config, 10, 100)
