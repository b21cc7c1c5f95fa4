"""AlexNet's two towers on the mesh's model axis, as the paper split them over two GPUs."""

import jax
import numpy as np
import pytest

from imagenet_train import sharding
from imagenet_train import state as state_lib
from imagenet_train import step as step_lib
from imagenet_train.config.schema import base_config
from imagenet_train.data import DatasetInfo
from imagenet_train.errors import UserError

SHAPE = (67, 67, 3)  # AlexNet's smallest input: every layer runs, on 1x1 maps at the end


def _setup(model_parallelism, split_towers):
  config = base_config()
  config.model, config.dtype, config.batch_size, config.num_train_steps = "alexnet", "float32", 8, 10
  config.model_options.split_towers = split_towers
  config.model_options.dropout_rate = 0.0
  config.learning_rate = 0.01
  mesh = sharding.create_mesh(jax.devices(), model_parallelism)
  return state_lib.build(config, mesh, DatasetInfo(10, SHAPE, num_train_examples=80, num_eval_examples=8)), config


def _one_step(setup, config, batch):
  state = setup.initial_state()
  state, metrics, _ = step_lib.jit_train_step(setup)(state, sharding.to_global(batch, setup.mesh))
  return state, float(metrics.compute()["loss"])


def test_towers_live_on_separate_devices_and_train_like_the_replicated_network():
  split, config = _setup(model_parallelism=2, split_towers=True)
  assert dict(split.mesh.shape) == {"data": 4, "model": 2}
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.standard_normal((8, *SHAPE)).astype(np.float32),
    "label": rng.integers(0, 10, 8).astype(np.int32),
  }
  state, loss = _one_step(split, config, batch)
  # Each device holds one tower of conv2: its 128 output maps, from its own 48 input maps.
  conv2 = state.params["conv2"]["kernel"]
  assert conv2.shape == (5, 5, 48, 256)
  assert {shard.data.shape for shard in conv2.addressable_shards} == {(5, 5, 48, 128)}
  first_tower_devices = set(split.mesh.devices[:, 0])
  assert all(
    (shard.index[3].start or 0) == (0 if shard.device in first_tower_devices else 128)
    for shard in conv2.addressable_shards
  )
  # The hidden FC layers are split too; the classifier stays whole on every device.
  assert {s.data.shape for s in state.params["fc6"]["kernel"].addressable_shards} == {(9216, 2048)}
  assert {s.data.shape for s in state.params["fc8"]["kernel"].addressable_shards} == {(4096, 10)}
  # The momentum follows its parameter's layout.
  trace = [leaf for leaf in jax.tree.leaves(state.opt_state) if getattr(leaf, "shape", None) == (5, 5, 48, 256)]
  assert trace and {s.data.shape for s in trace[0].addressable_shards} == {(5, 5, 48, 128)}

  replicated, _ = _setup(model_parallelism=1, split_towers=False)
  reference, reference_loss = _one_step(replicated, config, batch)
  assert {s.data.shape for s in reference.params["conv2"]["kernel"].addressable_shards} == {(5, 5, 48, 256)}
  np.testing.assert_allclose(loss, reference_loss, rtol=1e-5)
  for a, b in zip(
    jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(jax.device_get(reference.params)), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_model_parallelism_must_divide_the_devices():
  with pytest.raises(UserError, match="model_parallelism=3 does not divide the 8 devices"):
    sharding.create_mesh(jax.devices(), 3)
