"""The device mesh, the shardings of batches and state, and global batches from host data.

The mesh has two axes: `data` splits each batch, and `model` splits the parameters a model
marks with `nn.with_partitioning` (AlexNet's two towers, say). With `model_parallelism=1`, the
default, the model axis has one device and every parameter is replicated.
"""

import collections
from collections.abc import Iterator, Sequence

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from imagenet_train.errors import UserError

DATA_AXIS = "data"
MODEL_AXIS = "model"


def create_mesh(devices: Sequence[jax.Device] | None = None, model_parallelism: int = 1) -> Mesh:
  """A (data, model) mesh over every device of every process, `model_parallelism` along `model`."""
  devices = jax.devices() if devices is None else devices
  if model_parallelism < 1 or len(devices) % model_parallelism:
    raise UserError(
      f"--config.model_parallelism={model_parallelism} does not divide the {len(devices)} devices: "
      "use a divisor of the device count"
    )
  return Mesh(np.asarray(devices).reshape(-1, model_parallelism), (DATA_AXIS, MODEL_AXIS))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the data axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def state_sharding(mesh: Mesh, tx, state, param_specs):
  """Shardings for a train state: parameters, their optimizer moments and their averages split as
  `param_specs` say, everything else (step counters, BatchNorm statistics) replicated."""
  named = jax.tree.map(lambda spec: NamedSharding(mesh, spec), param_specs)
  return state.replace(
    step=replicated(mesh),
    nonfinite_step=replicated(mesh),
    params=named,
    batch_stats=jax.tree.map(lambda _: replicated(mesh), state.batch_stats),
    averages={
      name: {"params": named, "batch_stats": jax.tree.map(lambda _: replicated(mesh), average["batch_stats"])}
      for name, average in state.averages.items()
    },
    opt_state=optax.tree_map_params(
      tx, lambda _, sharding: sharding, state.opt_state, named, transform_non_params=lambda _: replicated(mesh)
    ),
  )


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """This process's share of a global batch: its devices' share of the mesh."""
  local_devices = sum(device.process_index == jax.process_index() for device in mesh.devices.flat)
  return global_batch_size * local_devices // mesh.devices.size


def to_global(local_batch: dict, mesh: Mesh) -> dict:
  """Assembles each process's numpy arrays into global arrays sharded on the data axis."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def prefetch_to_mesh(local_batches: Iterator[dict], mesh: Mesh, size: int = 2) -> Iterator[dict]:
  """Keeps `size` global batches in flight to the devices ahead of the consumer."""
  queue = collections.deque()
  for local_batch in local_batches:
    queue.append(to_global(local_batch, mesh))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
