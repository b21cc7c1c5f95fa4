"""Learning-rate schedules, the plateau rule, each optimizer's own fields and both kinds of weight decay."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from imagenet_train import optim
from imagenet_train.config.schema import base_config, epochs_to_steps
from imagenet_train.errors import UserError


def schedule_config(**schedule):
  config = base_config()
  config.learning_rate = 0.1
  config.schedule.update(schedule)
  return config


def test_steps_schedule_divides_at_the_given_epochs():
  config = schedule_config(name="steps", boundaries_epochs=(2, 3), decay_factor=0.1)
  lr = optim.learning_rate_schedule(config, steps_per_epoch=10, total_steps=40)
  np.testing.assert_allclose(
    [lr(0), lr(19), lr(20), lr(29), lr(30), lr(39)], [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3], rtol=1e-6
  )


def test_exponential_schedule_is_googlenets_staircase():
  config = schedule_config(name="exponential", decay_every_epochs=8, decay_factor=0.96)
  lr = optim.learning_rate_schedule(config, steps_per_epoch=5, total_steps=1000)
  np.testing.assert_allclose([lr(0), lr(39), lr(40), lr(80)], [0.1, 0.1, 0.096, 0.1 * 0.96**2], rtol=1e-6)


def test_epochs_to_steps_rounds_to_the_nearest_step():
  assert [epochs_to_steps(e, 10) for e in (0, 0.04, 0.05, 0.26, 1, 2.5)] == [0, 0, 0, 3, 10, 25]
  assert epochs_to_steps(90.0, 5004) == 450_360


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
  config.optimizer.sgd.momentum = 0.0
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
  params = {
    "conv1": {"kernel": jnp.ones((2, 2))},
    "prelu1": {"slope": jnp.ones((2, 2))},
    "prelu2": {"slope": jnp.ones(())},
  }
  updates = zero_grad_updates(decay_only(mode, exclude=("slope",)), params)
  np.testing.assert_allclose(updates["conv1"]["kernel"], -0.05 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_array_equal(updates["prelu1"]["slope"], np.zeros((2, 2)))
  np.testing.assert_array_equal(updates["prelu2"]["slope"], np.zeros(()))
  with pytest.raises(
    UserError, match="names slopes, which no parameter of this model is called: use some of kernel, slope"
  ):
    decay_only(mode, exclude=("slopes",)).init(params)


def test_unknown_schedule_and_optimizer_are_user_errors():
  with pytest.raises(UserError, match="unknown schedule"):
    optim.learning_rate_schedule(schedule_config(name="linear"), 10, 100)
  config = schedule_config()
  config.optimizer.name = "lamb"
  with pytest.raises(UserError, match="unknown optimizer"):
    optim.create_optimizer(config, 10, 100)


def first_update(name: str, grad: float = 2.0, **fields) -> float:
  """The first update of one parameter under optimizer `name`, with `fields` set in its block."""
  config = schedule_config(name="constant")
  config.optimizer.name = name
  config.optimizer.weight_decay = 0.0
  config.optimizer[name].update(fields)
  tx = optim.create_optimizer(config, steps_per_epoch=1, total_steps=1)[0]
  params = {"w": jnp.ones(())}
  return float(tx.update({"w": jnp.full((), grad)}, tx.init(params), params)[0]["w"])


def test_each_optimizer_reads_its_own_block():
  # Adam's first step after bias correction: -lr g / (|g| + eps).
  np.testing.assert_allclose(first_update("adam", eps=1.0), -0.1 * 2 / 3, rtol=1e-5)
  # RMSProp's: the mean square (1 - decay) g^2, eps outside the root, momentum's first step the update itself.
  np.testing.assert_allclose(first_update("rmsprop", decay=0.5, eps=1.0), -0.1 * 2 / (np.sqrt(2) + 1), rtol=1e-5)
  np.testing.assert_allclose(first_update("sgd", momentum=0.5, nesterov=True), -0.1 * 2 * 1.5, rtol=1e-5)
  config = base_config()
  assert set(config.optimizer.sgd) == {"momentum", "nesterov"}
  assert set(config.optimizer.adam) == {"b1", "b2", "eps"}
  assert set(config.optimizer.rmsprop) == {"decay", "eps", "momentum"}


@pytest.mark.parametrize(
  "name, direction",
  [
    ("sgd", [optax.trace(decay=0.9)]),
    ("adam", [optax.scale_by_adam()]),
    ("rmsprop", [optax.scale_by_rms(eps_in_sqrt=False), optax.trace(decay=0.9)]),
  ],
)
def test_optimizer_state_keeps_the_layout_checkpoints_hold(name, direction):
  """l2 decay, the direction, the learning rate: the chain (and so the state tree) earlier checkpoints hold."""
  config = schedule_config(name="constant")
  config.optimizer.name = name
  tx = optim.create_optimizer(config, steps_per_epoch=1, total_steps=1)[0]
  learning_rate = optax.scale_by_learning_rate(optax.constant_schedule(0.1))
  expected = optax.chain(optax.add_decayed_weights(1e-4), *direction, learning_rate)
  params = {"conv": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
  assert jax.tree.structure(tx.init(params)) == jax.tree.structure(expected.init(params))


def test_a_config_recorded_with_the_flat_optimizer_block_reads_in_todays_layout():
  """config.json of runs from before each optimizer had its own block: their fields land in the block of the
  optimizer that read them (an ensemble rebuilds each member from its recorded config)."""
  from imagenet_train.config import schema

  recorded = base_config().to_dict()
  recorded["optimizer"] = {
    "name": "rmsprop",
    "momentum": 0.6,
    "nesterov": False,
    "b1": 0.9,
    "b2": 0.999,
    "eps": 1.0,
    "rms_decay": 0.95,
    "weight_decay": 4e-5,
    "weight_decay_mode": "l2",
    "weight_decay_exclude": (),
    "grad_clip_norm": 2.0,
  }
  upgraded = schema.upgrade_recorded(recorded)["optimizer"]
  assert upgraded["rmsprop"] == {"decay": 0.95, "eps": 1.0, "momentum": 0.6}
  assert upgraded["sgd"] == base_config().optimizer.sgd.to_dict()  # unread by an rmsprop run: the defaults
  assert {key: upgraded[key] for key in ("name", "weight_decay", "grad_clip_norm")} == {
    "name": "rmsprop",
    "weight_decay": 4e-5,
    "grad_clip_norm": 2.0,
  }
  assert not {"momentum", "eps", "rms_decay", "b1"} & upgraded.keys()
  today = base_config().to_dict()
  assert schema.upgrade_recorded(today) is today  # a config in today's layout is left as it is
