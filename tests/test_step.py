"""The jitted train step: device-count invariance and that the default recipe learns."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from imagenet_train import sharding, train
from imagenet_train.data import pipeline


def _run_steps(config, devices, num_steps):
  setup = train.prepare(config, devices)
  state = jax.jit(functools.partial(train.init_state, setup.model, setup.tx, setup.info.image_shape, config.seed),
                  out_shardings=setup.state_sharding)()
  step = train.jit_train_step(setup)
  batches = pipeline.train_batches(setup.builder, config.data, local_batch_size=config.batch_size, seed=config.seed,
                                   start_step=0, process_index=0, process_count=1)
  losses = []
  for _ in range(num_steps):
    state, metrics, _ = step(state, sharding.to_global(next(batches), setup.mesh))
    losses.append(float(metrics.compute()["loss"]))
  return jax.device_get(state), losses


def test_three_steps_on_one_and_eight_devices_agree(config):
  assert len(jax.devices()) == 8
  # A ResNet with BatchNorm: its statistics must span the global batch for the runs to agree.
  config.model = "resnet18"
  config.model_options = {"stem": "small", "width": 4}
  config.batch_size = 32
  one, _ = _run_steps(config, jax.devices()[:1], 3)
  eight, _ = _run_steps(config, jax.devices(), 3)
  assert int(one.step) == int(eight.step) == 3
  for a, b in zip(jax.tree.leaves((one.params, one.batch_stats)), jax.tree.leaves((eight.params, eight.batch_stats))):
    # fp32 tolerance: 1 and 8 devices sum in other orders, and BatchNorm on a width-4 network
    # amplifies that to about 2e-5 after three steps. Per-device statistics would miss by far more.
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)
  # And the steps moved the parameters, so the agreement is not vacuous.
  setup = train.prepare(config, jax.devices()[:1])
  init = train.init_state(setup.model, setup.tx, setup.info.image_shape, config.seed)
  assert not np.allclose(init.params["head"]["kernel"], one.params["head"]["kernel"], atol=1e-4)


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
