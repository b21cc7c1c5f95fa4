"""Orbax checkpoints in the workdir: periodic async saves, newest N plus the best, resume.

Each step directory holds two items: `state` (the train state, restored straight into the
mesh's shardings) and `meta` (JSON: the model, its parameter shapes and the data position),
which is read first so that a workdir of another model is refused before anything is loaded.

A step that cannot be read (a truncated or zeroed array file, a missing item, an empty folder)
is damaged. `train` resumes from the newest readable step and moves the damaged ones newer than
it, and any save that never finished, to `<workdir>/damaged_checkpoints/`: out of Orbax's sight,
which would otherwise delete them (a half-written save when it saves that step again, an old step
when it falls out of the newest N), and kept for the user. `evaluate` moves nothing.

Each checkpoint's meta records the whole config it was trained with and the mean training loss of the steps before
it. Resuming compares the config field by field (`config.schema.ON_RESUME`). After a NaN, the checkpoint to resume
from is the newest one written before the loss began to climb: the one before the first whose recorded loss exceeds
LOSS_SPIKE_FACTOR times the lowest recorded before it; `train --checkpoint=STEP` resumes there.
"""

import contextlib
import json
import os
import re
from collections.abc import Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import checkpoint_managers

from imagenet_train import write_errors
from imagenet_train.config import schema
from imagenet_train.errors import UserError
from imagenet_train.results import BEST_CHECKPOINT_METRIC as BEST

DAMAGED = "damaged_checkpoints"  # beside `checkpoints/` in the workdir, where Orbax never looks
SET_ASIDE = "set_aside_checkpoints"  # the steps after the one `train --checkpoint=STEP` resumes from
TEMPORARY = ".orbax-checkpoint-tmp"  # Orbax's suffix for a step, or an item, still being written
META_KEYS = ("model", "param_shapes", "batch_size", "seed")  # what resuming reads from `meta`


def param_shapes(params) -> dict[str, list[int]]:
  """Parameter shapes by '/'-joined path, the fingerprint of an architecture."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {jax.tree_util.keystr(path, simple=True, separator="/"): list(np.shape(leaf)) for path, leaf in flat}


class DamagedCheckpoint(Exception):
  """Checkpoint `step` cannot be read; `reason` says what is wrong with it, as a clause."""

  def __init__(self, step: int, reason: str):
    super().__init__(f"checkpoint step {step} is damaged ({reason})")
    self.step, self.reason = step, reason


def checkpoint_directory(workdir: str) -> str:
  """Where the checkpoints of `workdir` are: bucket paths (gs://) as they are, local ones made absolute."""
  return os.path.join(workdir if "://" in workdir else os.path.abspath(workdir), "checkpoints")


class Checkpointer:
  """Saves and restores the train state of one workdir."""

  def __init__(self, workdir: str, *, keep: int, enable_async: bool = True):
    self.directory = checkpoint_directory(workdir)
    self.workdir = os.path.dirname(self.directory)
    self.damaged_directory = os.path.join(self.workdir, DAMAGED)
    self._unfinished = None  # the step of the newest save, whose background writes may still fail
    self._failed = False  # a save failed and was reported; Orbax raises that failure again at every wait
    policy = checkpoint_managers.AnyPreservationPolicy(
      [
        checkpoint_managers.LatestN(n=keep),
        checkpoint_managers.BestN(
          get_metric_fn=lambda m: m[BEST], reverse=False, n=1, keep_checkpoints_without_metrics=False
        ),
      ]
    )
    try:
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
    except ValueError as error:  # json.JSONDecodeError is one
      self._refuse_unreadable_metrics(error)
      raise

  def _refuse_unreadable_metrics(self, error: ValueError) -> None:
    """Orbax reads every step's metrics when it opens the directory, and one that is not JSON stops it there:
    names that step, which the user moves aside (Orbax cannot open the directory to let us do it)."""
    directory = epath.Path(self.directory)
    for step_dir in directory.iterdir() if directory.exists() else []:
      metrics = step_dir / "metrics" / "metrics"
      if step_dir.name.isdigit() and metrics.exists():
        try:
          json.loads(metrics.read_text())
        except ValueError:
          raise UserError(
            f"checkpoint step {step_dir.name} in {self.directory} is damaged (its metrics file is not valid JSON: "
            f"{_first_line(error)}): move {step_dir} to {os.path.join(self.damaged_directory, step_dir.name)} "
            "and rerun"
          ) from None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    """The step with the highest eval top-1 among those kept."""
    return self.manager.best_step()

  def all_steps(self) -> list[int]:
    """The steps Orbax sees, oldest first: damaged ones included, saves that never finished not."""
    return sorted(self.manager.all_steps())

  def step_path(self, step: int) -> epath.Path:
    return epath.Path(self.directory) / str(step)

  def read_meta(self, step: int) -> dict:
    """The `meta` item of `step`; raises DamagedCheckpoint when it, or the step's folder, cannot be read."""
    path = self.step_path(step)
    if not any(path.iterdir()):
      raise DamagedCheckpoint(step, "its folder is empty")
    if not (path / "meta").exists():
      raise DamagedCheckpoint(step, "its meta item, meta/, is missing")
    try:
      meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as error:  # Orbax and JSON raise many types; any of them means unreadable
      raise DamagedCheckpoint(step, f"its meta item cannot be read: {_first_line(error)}") from None
    missing = [key for key in META_KEYS if key not in meta] if isinstance(meta, dict) else list(META_KEYS)
    if missing:
      raise DamagedCheckpoint(step, f"its meta item lacks {', '.join(missing)}")
    return meta

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
    """Restores `state` at `step` into the shardings of `abstract_state` (ShapeDtypeStructs).

    Raises DamagedCheckpoint when its files cannot be read, and UserError when they can but hold a state of
    another layout (a config that keeps other parameter averages, say)."""
    if not (self.step_path(step) / "state").exists():
      raise DamagedCheckpoint(step, "its state item, state/, is missing")
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except Exception as error:  # Orbax and TensorStore raise many types; the cause is read below
      # The state's other reads are left in flight, each to meet Orbax's closed event loop when it finishes.
      write_errors.quiet_abandoned_orbax_work()
      self._refuse_other_layout(step, abstract_state)
      raise DamagedCheckpoint(step, f"its arrays cannot be read: {_first_line(error)}") from None
    return restored["state"]

  def _refuse_other_layout(self, step: int, abstract_state) -> None:
    """After a failed restore: raises DamagedCheckpoint if the state's own metadata cannot be read, UserError if it
    can and lists other arrays than `abstract_state`; returns if they agree (then the arrays are damaged)."""
    try:
      metadata = ocp.StandardCheckpointHandler().metadata(self.step_path(step) / "state")
    except FileNotFoundError:
      raise DamagedCheckpoint(step, "its state metadata, state/_METADATA, is missing") from None
    except Exception as error:
      raise DamagedCheckpoint(step, f"its state metadata cannot be read: {_first_line(error)}") from None
    saved, expected = _leaf_paths(metadata), _leaf_paths(abstract_state)
    if saved != expected:
      differences = [
        f"{verb} {', '.join(sorted(paths)[:2])}{', ...' if len(paths) > 2 else ''}"
        for verb, paths in (("adds", expected - saved), ("lacks", saved - expected))
        if paths
      ]
      raise UserError(
        f"checkpoint step {step} in {self.directory} holds a state of another layout than the config's (the "
        f"config {' and '.join(differences)}): resume with the config that wrote it (saved in "
        f"{self.step_path(step) / 'meta' / 'metadata'}), or use a new --workdir"
      )

  def problem(self, step: int, abstract_state=None) -> str | None:
    """What makes checkpoint `step` unreadable, as a clause ("its folder is empty"), or None.

    Reads its folder and meta item; with `abstract_state` it also restores the state and drops it, the only check
    that finds a truncated or zeroed array file. Raises UserError for a state of another layout (not damage)."""
    try:
      self.read_meta(step)
      if abstract_state is not None:
        self.restore(step, abstract_state)
    except DamagedCheckpoint as damage:
      return damage.reason
    return None

  def readable_steps(self, abstract_state, but: int | None = None) -> list[int]:
    """The steps, oldest first and `but` left out, whose meta and state restore."""
    return [step for step in self.all_steps() if step != but and self.problem(step, abstract_state) is None]

  def temporaries(self) -> list[epath.Path]:
    """Folders of saves that never finished (a crash or a kill during a save), which Orbax ignores and deletes when
    it saves the same step again."""
    directory = epath.Path(self.directory)
    return sorted(path for path in directory.iterdir() if TEMPORARY in path.name) if directory.exists() else []

  def move_aside(self, paths: list[epath.Path], folder: str = DAMAGED) -> list[str]:
    """Moves step folders to `<workdir>/<folder>/<name>` (`<name>.<n>` when an earlier one took the name), out of
    Orbax's sight, and makes Orbax forget them; returns where each went. Every process calls it with the same
    paths (each decides the same from the same files), and process 0 alone moves the shared folders."""
    damaged = epath.Path(self.workdir) / folder
    targets = []
    for path in paths:
      target, n = damaged / path.name, 0
      while target.exists():
        n += 1
        target = damaged / f"{path.name}.{n}"
      targets.append(target)
    _sync_processes("imagenet_train: damaged checkpoints named")  # before process 0 moves any, for the names
    if jax.process_index() == 0:
      damaged.mkdir(parents=True, exist_ok=True)
      for path, target in zip(paths, targets):
        path.rename(target)
    _sync_processes("imagenet_train: damaged checkpoints moved")  # before any process lists the steps again
    self.manager.reload()
    return [os.fspath(target) for target in targets]

  def save(self, step: int, state, meta: dict, metrics: dict | None = None, force: bool = False) -> bool:
    """Starts saving `step` (in the background when async); a failed write, of this save or of the previous one, is
    a UserError naming its step, the free space and the step a rerun resumes from."""
    self.wait()  # Orbax waits for the previous save before it starts one anyway; waiting here names its step
    with self._reported(step):
      saved = self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        metrics=metrics,
        force=force,
      )
    self._unfinished = step if saved else None
    return saved

  def wait(self):
    """Waits for the newest save's background writes; their failure is a UserError as in `save`."""
    with self._reported(self._unfinished):
      self.manager.wait_until_finished()
    self._unfinished = None

  def close(self):
    if self._failed:  # Orbax's close would only raise the reported failure again, before it closes anything
      return
    with self._reported(self._unfinished):
      self.manager.close()

  @contextlib.contextmanager
  def _reported(self, step: int | None) -> Iterator[None]:
    try:
      yield
    except Exception as error:
      what = f"checkpoint step {step}" if step is not None else "a checkpoint"
      user_error = write_errors.failure(error, what, self.directory, resume_dir=self.directory)
      if user_error is None:
        raise
      self._failed = True
      raise user_error from None


def _sync_processes(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def _leaf_paths(tree) -> set[str]:
  return {
    jax.tree_util.keystr(path, simple=True, separator="/") for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def _first_line(error: BaseException) -> str:
  """The first line of the innermost cause: TensorStore's own words ("OUT_OF_RANGE: ... is not valid for value of
  size 230807"), where Orbax's wrapper prints the whole TensorStore spec; without the path, the step is named."""
  while error.__cause__ is not None:
    error = error.__cause__
  lines = str(error).strip().splitlines()
  line = lines[0] if lines else type(error).__name__
  line = re.sub(r' in OCDBT database at [^"]*"[^"]*"', "", line).split(" [tensorstore_spec")[0]
  return line if len(line) <= 300 else line[:297] + "..."


def check_workdir(workdir: str) -> None:
  """Creates the workdir, local or on a bucket (gs://), and proves it writable."""
  try:
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_test_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as error:
    if error.errno in write_errors.SPACE_ERRNOS:  # a full disk, often a rerun before space was freed
      raise write_errors.failure(error, "a test file", workdir, resume_dir=checkpoint_directory(workdir)) from None
    raise UserError(
      f"cannot write to workdir {workdir} ({error.strerror}): pass a --workdir you can write to"
    ) from None


def run_meta(setup, step: int, train_loss: float | None = None) -> dict:
  """The `meta` item saved beside the state of a run's `setup` (a state.Setup) at `step`; `train_loss`, the mean
  training loss of the steps just before it, tells after a NaN which checkpoints were written before the loss
  began to climb."""
  c = setup.config
  return {
    "train_loss": train_loss,
    "model": c.model,
    "param_shapes": param_shapes(setup.abstract_state.params),
    "step": step,
    "epoch": step / setup.steps_per_epoch,
    "seed": c.seed,
    "batch_size": c.batch_size,
    "examples_seen": step * c.batch_size,
    "config": c.to_json_best_effort(),
  }


# A checkpoint whose recorded training loss exceeds this multiple of the lowest one recorded at an earlier
# checkpoint was written while the loss was climbing: resuming from it would run into the same divergence.
LOSS_SPIKE_FACTOR = 1.25


def before_divergence(losses: list[tuple[int, float | None]]) -> int | None:
  """Of (step, recorded training loss) pairs, oldest first, the newest step written before the loss began to climb:
  the one before the first whose loss is not finite or exceeds LOSS_SPIKE_FACTOR times the lowest before it. A step
  without a recorded loss (an imported or older checkpoint) counts as good; None when the very first is bad."""
  good, lowest = None, float("inf")
  for step, loss in losses:
    if loss is not None:
      if not np.isfinite(loss) or loss > LOSS_SPIKE_FACTOR * lowest:
        return good
      lowest = min(lowest, loss)
    good = step
  return good


def recovery_advice(checkpointer: Checkpointer) -> str:
  """After a NaN: which checkpoint to resume from, and how, as a sentence."""
  checkpointer.wait()  # the saves in flight, and the deletions of the steps they push out of the newest N
  losses = []
  for step in checkpointer.all_steps():
    try:
      losses.append((step, checkpointer.read_meta(step).get("train_loss")))
    except (DamagedCheckpoint, FileNotFoundError):  # FileNotFoundError: deleted since Orbax listed it
      continue
  if not losses:
    return "No checkpoint was written before it: lower --config.learning_rate and rerun, which starts afresh"
  step = before_divergence(losses)
  loss = dict(losses).get(step)
  at = f" (train loss {loss:.4g})" if loss is not None else ""
  if step is None:
    return (
      f"Every checkpoint in {checkpointer.directory} was written while the loss climbed (by the rule that a loss "
      f"above {LOSS_SPIKE_FACTOR}x the lowest before it is a spike): lower --config.learning_rate and train in a new "
      "--workdir"
    )
  if step == losses[-1][0]:
    return f"The newest checkpoint, step {step}{at}, precedes the divergence: lower --config.learning_rate and rerun"
  newer = [later for later, _ in losses if later > step]
  return (
    f"The loss began to climb after checkpoint step {step}{at} (step {newer[0]}'s loss exceeds {LOSS_SPIKE_FACTOR}x "
    f"the lowest before it): rerun with --checkpoint={step} and a lower --config.learning_rate, which resumes from "
    f"step {step} and sets steps {', '.join(map(str, newer))} aside"
  )


def restore_or_init(setup, checkpointer: Checkpointer, step: int | None = None, resume_from: int | None = None):
  """The state of `setup` at `step`, or for train (`step` None) at the newest readable checkpoint, or a fresh one.

  With `step` None (train), damaged steps newer than the one resumed from and saves that never finished are moved
  to `damaged_checkpoints/`, a warning naming each; a workdir whose every checkpoint is damaged is refused with a
  UserError and left as it is, so that a rerun is refused again rather than starting over. With a `step`
  (evaluate), nothing is moved: a damaged one is a UserError naming what is wrong and the readable steps."""
  if step is not None:
    return _restore_asked(setup, checkpointer, step)
  if resume_from is not None:
    _set_aside_after(checkpointer, resume_from)
  steps = checkpointer.all_steps()
  damaged, state = [], None
  for candidate in reversed(steps):
    try:
      state = _restore_step(setup, checkpointer, candidate)
      break
    except DamagedCheckpoint as damage:
      damaged.append(damage)
  if steps and state is None:
    reasons = "; ".join(f"step {d.step}: {d.reason}" for d in damaged)
    raise UserError(
      f"no checkpoint in {checkpointer.directory} can be read ({reasons}); left as they are: restore them from "
      "a backup, or pass a new --workdir to start afresh"
    )
  resumed = f"resuming from step {candidate}" if state is not None else "starting afresh"
  moves = [(f"checkpoint step {d.step}", d.reason, checkpointer.step_path(d.step)) for d in damaged]
  moves += [(f"the save {path.name}", "it never finished", path) for path in checkpointer.temporaries()]
  if moves:
    targets = checkpointer.move_aside([path for _, _, path in moves])
    for (what, reason, _), target in zip(moves, targets):
      logging.warning(
        "%s in %s is damaged (%s): moved it to %s; %s", what, checkpointer.directory, reason, target, resumed
      )
  return state if state is not None else setup.initial_state()


def _set_aside_after(checkpointer: Checkpointer, step: int) -> None:
  """Moves the checkpoints after `step` to `set_aside_checkpoints/`, so that training resumes from `step` (after a
  divergence, say) and Orbax neither deletes them nor meets them when it saves those steps again."""
  steps = checkpointer.all_steps()
  if step not in steps:
    listed = ", ".join(map(str, steps)) or "none"
    raise UserError(
      f"--checkpoint={step}: there is no checkpoint step {step} in {checkpointer.directory} (its steps: {listed})"
    )
  newer = [checkpointer.step_path(later) for later in steps if later > step]
  if newer:
    targets = checkpointer.move_aside(newer, SET_ASIDE)
    logging.warning("Resuming from step %d as asked: moved the newer checkpoints to %s", step, ", ".join(targets))


def _restore_asked(setup, checkpointer: Checkpointer, step: int):
  """The state at `step`, which evaluate asked for: moves nothing, and names the readable steps if it is damaged."""
  try:
    return _restore_step(setup, checkpointer, step)
  except DamagedCheckpoint as damage:
    readable = checkpointer.readable_steps(setup.abstract_state, but=step)
    fix = (
      f"pass --checkpoint=STEP for one of the readable steps: {', '.join(map(str, readable))}"
      if readable
      else "no other step there can be read either: restore them from a backup"
    )
    raise UserError(f"checkpoint step {step} in {checkpointer.directory} is damaged ({damage.reason}): {fix}") from None


def _restore_step(setup, checkpointer: Checkpointer, step: int):
  """The state at `step` after the checks on its meta; raises DamagedCheckpoint, or UserError for another model."""
  c = setup.config
  meta = checkpointer.check_compatible(step, c.model, param_shapes(setup.abstract_state.params))
  _check_resumable(meta, c, step, checkpointer.directory)
  logging.info("Restoring step %d from %s", step, checkpointer.directory)
  return checkpointer.restore(step, setup.abstract_state)


def _check_resumable(meta: dict, config, step: int, directory: str) -> None:
  """Refuses a config that changes what the saved state means or how it is laid out, naming the first such field;
  warns of each change that breaks the exact continuation of the data stream."""
  # Checkpoints of earlier versions recorded only these two of their config.
  recorded = (
    json.loads(meta["config"]) if "config" in meta else {"batch_size": meta["batch_size"], "seed": meta["seed"]}
  )
  changes = schema.resume_changes(recorded, config)
  refused = [change for change in changes if change.rule.action == schema.REFUSE]
  if refused:
    first, others = refused[0], [change.field for change in refused[1:]]
    more = f" (so do {', '.join(others)})" if others else ""
    raise UserError(
      f"cannot resume from checkpoint step {step} in {directory}: {first.describe()}{more}. Resume with "
      f"--config.{first.field}={schema.flag_value(first.saved)}, or pass a new --workdir to train afresh with the "
      "new value"
    )
  for change in changes:
    logging.warning("Resuming from checkpoint step %d: %s", step, change.describe())
