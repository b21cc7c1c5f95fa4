"""The jitted train step: device-count invariance and that the default recipe learns."""

import jax
import jax.numpy as jnp
import numpy as np

from imagenet_train import sharding, train
from imagenet_train import state as state_lib
from imagenet_train import step as step_lib

from conftest import start_training


def _run_steps(config, devices, num_steps):
  setup, state, step, batches = start_training(config, devices)
  losses = []
  for _ in range(num_steps):
    state, metrics, _ = step(state, sharding.to_global(next(batches), setup.mesh))
    losses.append(float(metrics.compute()["loss"]))
  return jax.device_get(state), losses


def _assert_trees_close(a, b, rtol, atol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_three_steps_on_one_and_eight_devices_agree(config):
  assert len(jax.devices()) == 8
  config.batch_size = 32
  one, one_losses = _run_steps(config, jax.devices()[:1], 3)
  eight, eight_losses = _run_steps(config, jax.devices(), 3)
  assert int(one.step) == int(eight.step) == 3
  # fp32 tolerance: the devices' partial sums of the gradient add up in another order.
  _assert_trees_close(one.params, eight.params, rtol=1e-5, atol=1e-6)
  _assert_trees_close(one.opt_state, eight.opt_state, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(one_losses, eight_losses, rtol=1e-6)
  # The steps moved the parameters, so the agreement is not vacuous.
  setup = state_lib.prepare(config, jax.devices()[:1])
  init = state_lib.init_state(setup.model, setup.tx, setup.info.image_shape, config.seed)
  assert not np.allclose(init.params["output"]["kernel"], one.params["output"]["kernel"], atol=1e-4)


def test_batchnorm_statistics_span_the_global_batch(config):
  # With the parameters held still (learning rate 0), the running BatchNorm statistics are
  # averages of batch statistics; per-device statistics would give other variances. (Parameters
  # of a BatchNorm network are compared above only through LeNet: on real images a randomly
  # initialised width-4 ResNet has near-constant channels whose normalisation turns rounding
  # differences of the partitioned convolutions into percent-level gradient differences.)
  config.model = "resnet18"
  config.model_options = {"stem": "small", "width": 4}
  config.batch_size = 32
  config.learning_rate = 0.0
  one, _ = _run_steps(config, jax.devices()[:1], 3)
  eight, _ = _run_steps(config, jax.devices(), 3)
  _assert_trees_close(one.batch_stats, eight.batch_stats, rtol=1e-4, atol=1e-5)
  setup = state_lib.prepare(config, jax.devices()[:1])
  init = state_lib.init_state(setup.model, setup.tx, setup.info.image_shape, config.seed)
  assert not np.allclose(init.batch_stats["bn1"]["var"], one.batch_stats["bn1"]["var"], atol=1e-3)


def test_default_config_first_steps_lower_the_loss(config):
  config.batch_size = 64
  _, losses = _run_steps(config, jax.devices(), 12)
  assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_bf16_compute_keeps_fp32_parameters_and_optimizer_state(config):
  config.dtype = "bfloat16"
  state, losses = _run_steps(config, jax.devices(), 1)
  assert np.isfinite(losses[0])
  for leaf in jax.tree.leaves((state.params, state.opt_state)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32


def test_target_distributions_train_like_smoothed_class_indices():
  """The `onehot` op's smoothed targets give the loss and accuracy of indices smoothed in the step."""
  from imagenet_train import metrics as metrics_lib

  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.standard_normal((6, 10)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 10, 6))
  smoothing = 0.1
  targets = jax.nn.one_hot(labels, 10) * (1 - smoothing) + smoothing / 10
  np.testing.assert_allclose(
    step_lib.cross_entropy(logits, targets, 10, 0.0), step_lib.cross_entropy(logits, labels, 10, smoothing), rtol=1e-6
  )
  np.testing.assert_array_equal(
    metrics_lib.topk_correct(logits, targets, 1), metrics_lib.topk_correct(logits, labels, 1)
  )


def test_parameter_averages_follow_their_definitions(config, tmp_path):
  """EMA (TensorFlow's, with num_updates) and Polyak averages of the parameter trajectory, kept in
  the step, equal the same averages computed here from the parameters after each step; training
  evaluates each beside the raw parameters."""
  config.averaging.ema_decay = 0.5
  config.averaging.polyak = True
  setup, state, step, batches = start_training(config, jax.devices()[:1])
  trajectory = [jax.device_get(state.params)]
  for _ in range(3):
    state, _, _ = step(state, sharding.to_global(next(batches), setup.mesh))
    trajectory.append(jax.device_get(state.params))
  ema = trajectory[0]
  for t, params in enumerate(trajectory[1:], start=1):
    decay = min(0.5, (1 + t) / (10 + t))
    ema = jax.tree.map(lambda a, x, decay=decay: decay * a + (1 - decay) * x, ema, params)
  polyak = jax.tree.map(lambda *xs: np.mean(xs, axis=0), *trajectory)  # states 0..3: polyak_start_epochs=0
  _assert_trees_close(state.averages["ema"]["params"], ema, rtol=1e-5, atol=1e-6)
  _assert_trees_close(state.averages["polyak"]["params"], polyak, rtol=1e-5, atol=1e-6)
  assert not np.allclose(jax.tree.leaves(polyak)[0], jax.tree.leaves(trajectory[-1])[0])

  summary = train.train_and_evaluate(config, str(tmp_path))
  assert {"eval/top1_error", "eval_ema/top1_error", "eval_polyak/top1_error", "eval_ema/log_loss"} <= set(summary)
  assert summary["eval_ema/log_loss"] != summary["eval/log_loss"]
