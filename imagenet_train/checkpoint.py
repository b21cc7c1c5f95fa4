"""Orbax checkpoints in the workdir: periodic async saves, newest N plus the best, resume.

Each step directory holds two items: `state` (the train state, restored straight into the
mesh's shardings) and `meta` (JSON: the model, its parameter shapes and the data position),
which is read first so that a workdir of another model is refused before anything is loaded.
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import checkpoint_managers

from imagenet_train.errors import UserError
from imagenet_train.results import BEST_CHECKPOINT_METRIC as BEST


def param_shapes(params) -> dict[str, list[int]]:
  """Parameter shapes by '/'-joined path, the fingerprint of an architecture."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {jax.tree_util.keystr(path, simple=True, separator="/"): list(np.shape(leaf)) for path, leaf in flat}


class Checkpointer:
  """Saves and restores the train state of one workdir."""

  def __init__(self, workdir: str, *, keep: int, enable_async: bool = True):
    # Bucket paths (gs://) go to Orbax as they are; local ones are made absolute.
    self.directory = os.path.join(workdir if "://" in workdir else os.path.abspath(workdir), "checkpoints")
    policy = checkpoint_managers.AnyPreservationPolicy(
      [
        checkpoint_managers.LatestN(n=keep),
        checkpoint_managers.BestN(
          get_metric_fn=lambda m: m[BEST], reverse=False, n=1, keep_checkpoints_without_metrics=False
        ),
      ]
    )
    self.manager = ocp.CheckpointManager(
      self.directory,
      # best_fn makes Orbax write each save's metrics and answer best_step(); the
      # preservation policy alone decides what is deleted.
      options=ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        best_fn=lambda m: m[BEST],
        best_mode="max",
        enable_async_checkpointing=enable_async,
        create=True,
      ),
      item_names=("state", "meta"),
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    """The step with the highest eval top-1 among those kept."""
    return self.manager.best_step()

  def read_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def check_compatible(self, step: int, model: str, shapes: dict) -> dict:
    """Refuses a checkpoint of another architecture, naming both; returns its meta."""
    meta = self.read_meta(step)
    if meta["model"] != model or meta["param_shapes"] != shapes:
      theirs = meta["model"] if meta["model"] != model else f"{model} with other shapes"
      raise UserError(
        f"{self.directory} holds a checkpoint of {theirs}, but the config trains {model}: "
        "use a new --workdir, or the config that wrote it"
      )
    return meta

  def restore(self, step: int, abstract_state):
    """Restores `state` at `step` into the shardings of `abstract_state` (ShapeDtypeStructs)."""
    restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"]

  def save(self, step: int, state, meta: dict, metrics: dict | None = None, force: bool = False) -> bool:
    return self.manager.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
      metrics=metrics,
      force=force,
    )

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def check_workdir(workdir: str) -> None:
  """Creates the workdir, local or on a bucket (gs://), and proves it writable."""
  try:
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_test_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as error:
    raise UserError(
      f"cannot write to workdir {workdir} ({error.strerror}): pass a --workdir you can write to"
    ) from None


def run_meta(setup, step: int) -> dict:
  """The `meta` item saved beside the state of a run's `setup` (a state.Setup) at `step`."""
  c = setup.config
  return {
    "model": c.model,
    "param_shapes": param_shapes(setup.abstract_state.params),
    "step": step,
    "epoch": step / setup.steps_per_epoch,
    "seed": c.seed,
    "batch_size": c.batch_size,
    "examples_seen": step * c.batch_size,
    "config": c.to_json_best_effort(),
  }


def restore_or_init(setup, checkpointer: Checkpointer, step: int | None = None):
  """The state of `setup` at `step` (default: the newest checkpoint), or a fresh one if there is none."""
  c = setup.config
  step = checkpointer.latest_step() if step is None else step
  if step is None:
    return setup.initial_state()
  meta = checkpointer.check_compatible(step, c.model, param_shapes(setup.abstract_state.params))
  if meta["batch_size"] != c.batch_size or meta["seed"] != c.seed:
    logging.warning(
      "Resuming with batch_size/seed %s/%s where the checkpoint used %s/%s: the data stream "
      "will differ from an uninterrupted run.",
      c.batch_size,
      c.seed,
      meta["batch_size"],
      meta["seed"],
    )
  logging.info("Restoring step %d from %s", step, checkpointer.directory)
  return checkpointer.restore(step, setup.abstract_state)
