"""The device mesh, the shardings of batches and state, and global batches from host data."""

import collections
from typing import Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def create_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A one-axis mesh whose `data` axis spans every device of every process."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the data axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


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
