"""Multi-host start-up on JAX's own multi-controller runtime.

`jax.distributed.initialize` runs when the user names a coordinator (`--coordinator_address`,
`--num_processes`, `--process_id`), under a SLURM step of several tasks, or on a Cloud TPU VM
slice of several workers (JAX reads those environments itself); a plain run stays one process.
Every process runs the same program: process 0 writes metrics and the summary, all of them take
part in Orbax's checkpoints, and log lines carry the process index.

JAX's coordination service watches the processes' heartbeats: when one dies, the others are
stopped within `heartbeat_timeout` seconds with a message saying that another task died,
instead of hanging in their next collective.
"""

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable

import jax
from absl import logging
from jax.experimental import multihost_utils

from imagenet_train.errors import UserError


def cluster_detected() -> str | None:
  """The multi-process environment JAX would configure itself from, if any."""
  if int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1"))) > 1:
    return "SLURM"
  if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
    return "Cloud TPU"
  return None


def initialize(
  coordinator_address: str | None,
  num_processes: int | None,
  process_id: int | None,
  *,
  timeout: int,
  heartbeat_timeout: int,
) -> None:
  """Starts the multi-process runtime when asked for or detected; a no-op for a single process."""
  explicit = coordinator_address is not None
  if explicit and (num_processes is None or process_id is None):
    raise UserError("--coordinator_address needs --num_processes and --process_id as well")
  if explicit and not 0 <= process_id < num_processes:
    raise UserError(f"--process_id={process_id} is not in [0, --num_processes={num_processes})")
  cluster = "the given coordinator" if explicit else cluster_detected()
  if cluster is None:
    return
  if explicit and process_id > 0:
    _wait_for_coordinator(coordinator_address, timeout)
  try:
    jax.distributed.initialize(
      coordinator_address,
      num_processes,
      process_id,
      initialization_timeout=timeout,
      heartbeat_timeout_seconds=heartbeat_timeout,
    )
  except (RuntimeError, ValueError) as error:  # jaxlib raises XlaRuntimeError, a RuntimeError
    where = coordinator_address or f"the coordinator {cluster} names"
    reason = str(error).strip().splitlines()[0][:200]
    raise UserError(
      f"cannot start {num_processes or 'the'} processes with the coordinator at {where} within "
      f"{timeout} s ({reason}): check the address is reachable from every host and that every "
      "process was started"
    ) from None
  _tag_log_lines()
  logging.info(
    "Process %d of %d (%s), %d local of %d devices",
    jax.process_index(),
    jax.process_count(),
    cluster,
    jax.local_device_count(),
    jax.device_count(),
  )


def _wait_for_coordinator(address: str, timeout: int) -> None:
  """Returns once the coordinator accepts connections; a user error naming it after `timeout` s.

  JAX aborts the process when it cannot reach the coordinator in time, which no handler can turn
  into a message, so the address is probed first.
  """
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise UserError(f"--coordinator_address={address} is not HOST:PORT, e.g. 10.0.0.2:12355")
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=5):
        return
    except OSError as error:
      if time.monotonic() >= deadline:
        raise UserError(
          f"cannot reach the coordinator at {address} within {timeout} s ({error.strerror or error}): "
          "start process 0 there, or check the address and that the port is open"
        ) from None
      time.sleep(1)


def _tag_log_lines() -> None:
  """Prefixes every absl log line with the process index, so merged logs say who wrote what."""
  prefix = f"[process {jax.process_index()}/{jax.process_count()}] "

  class Tag(logging.logging.Filter):
    def filter(self, record):
      record.msg = prefix + str(record.msg)
      return True

  logging.get_absl_handler().addFilter(Tag())


class Preemption:
  """Turns SIGTERM into a request the loop checks between steps, so that it can save and exit.

  One process handles the signal itself. Several leave it to JAX's preemption notifier, which
  jax.distributed installs: the processes agree on one step at which all of them stop (the
  preemption sync point), so that they save one consistent checkpoint.
  """

  def __init__(self):
    self._requested = False
    self._previous = None

  def __enter__(self):
    if jax.process_count() == 1:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self._requested = True

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._requested

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


@contextlib.contextmanager
def peers_alive(last_checkpoint: Callable[[], int | None], directory):
  """With several processes, a collective that fails because another process died is the
  user's signal to look at that process's log and resume, not a bug: it ends in one line."""
  try:
    yield
  except jax.errors.JaxRuntimeError as error:
    if jax.process_count() == 1:
      raise
    step = last_checkpoint()
    resume = (
      f"rerun the same command to resume from step {step} in {directory}"
      if step is not None
      else ("rerun the same command")
    )
    reason = str(error).strip().splitlines()[0][:200]
    raise UserError(
      f"a collective with the other processes failed ({reason}): another task died or stopped "
      f"answering; check its log, then {resume}",
      exit_code=1,
    ) from None
