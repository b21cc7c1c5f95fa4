"""Orbax checkpoints in the workdir: periodic async saves, newest N plus the best, resume.

Each step directory holds two items: `state` (the train state, restored straight into the
mesh's shardings) and `meta` (JSON: the model, its parameter shapes and the data position),
which is read first so that a workdir of another model is refused before anything is loaded.
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from imagenet_train.errors import UserError

BEST_METRIC = "eval/top1"


def param_shapes(params) -> dict[str, list[int]]:
  """Parameter shapes by '/'-joined path, the fingerprint of an architecture."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {jax.tree_util.keystr(path, simple=True, separator="/"): list(np.shape(leaf)) for path, leaf in flat}


class Checkpointer:
  """Saves and restores the train state of one workdir."""

  def __init__(self, workdir: str, *, keep: int, enable_async: bool = True):
    # Bucket paths (gs://) go to Orbax as they are; local ones are made absolute.
    self.directory = os.path.join(workdir if "://" in workdir else os.path.abspath(workdir), "checkpoints")
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(n=keep),
        checkpoint_managers.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=False, n=1,
                                  keep_checkpoints_without_metrics=False),
    ])
    self.manager = ocp.CheckpointManager(
        self.directory,
        # best_fn makes Orbax write each save's metrics and answer best_step(); the
        # preservation policy alone decides what is deleted.
        options=ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=lambda m: m[BEST_METRIC],
                                             best_mode="max", enable_async_checkpointing=enable_async, create=True),
        item_names=("state", "meta"))

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
      raise UserError(f"{self.directory} holds a checkpoint of {theirs}, but the config trains {model}: "
                      "use a new --workdir, or the config that wrote it")
    return meta

  def restore(self, step: int, abstract_state):
    """Restores `state` at `step` into the shardings of `abstract_state` (ShapeDtypeStructs)."""
    restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"]

  def save(self, step: int, state, meta: dict, metrics: dict | None = None, force: bool = False) -> bool:
    return self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                           meta=ocp.args.JsonSave(meta)),
                             metrics=metrics, force=force)

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()
