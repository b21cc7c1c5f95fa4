"""The training loop: config, data, model, optimizer, metrics and checkpoints meet here.

The state and its initialisation live in `state`, the pure step in `step`, preemption and peer failures in
`distributed`. The loop never waits for the devices except when it writes metrics, evaluates or checkpoints.
"""

import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from imagenet_train import checkpoint as checkpoint_lib
from imagenet_train import (
  distributed,
  evaluate,
  optim,
  protocols,
  results,
  sharding,
  watchdog,
  workdir_lock,
  write_errors,
)
from imagenet_train import metrics as metrics_lib
from imagenet_train import state as state_lib
from imagenet_train.errors import UserError
from imagenet_train.step import jit_train_step

SUMMARY = "summary.json"  # a finished run's results, beside config.json, for `report`


class AlreadyFinished(Exception):
  """The workdir's newest checkpoint is at or past the run's last step: there is nothing to train. `summary` is
  the finished run's, as it wrote it (None if it never got to)."""

  def __init__(self, workdir: str, step: int, total_steps: int):
    super().__init__(f"the run in {workdir} finished at step {step} (it trains {total_steps} steps)")
    path = epath.Path(workdir) / SUMMARY
    self.step, self.total_steps = step, total_steps
    self.summary = json.loads(path.read_text()) if path.exists() else None


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, devices=None, resume_from: int | None = None
) -> dict:
  """Trains to `total_steps`, resuming from the workdir's newest checkpoint (or from step `resume_from`, the steps
  after it set aside), and writes the summary; returns it. Raises AlreadyFinished when there is nothing to train."""
  setup = state_lib.prepare(config, devices)  # every check of the config and the data, before the workdir is touched
  if not setup.info.num_train_examples:
    raise UserError(
      f"dataset {config.data.name!r} has no training split (--config.data.train_split is empty): "
      "use it with `evaluate`, or train on a dataset that has one"
    )
  checkpoint_lib.check_workdir(workdir)
  with workdir_lock.hold(workdir, "train"):
    summary = _train(setup, workdir, resume_from)
    if jax.process_index() == 0:
      write_errors.write_text(os.path.join(workdir, SUMMARY), json.dumps(summary, indent=2), SUMMARY)
  return summary


def _train(setup: state_lib.Setup, workdir: str, resume_from: int | None) -> dict:
  config = setup.config
  guard = watchdog.Watchdog(config.watchdog_timeout_s)
  with guard.guard("opening the checkpoints"):
    checkpointer = checkpoint_lib.Checkpointer(
      workdir, keep=config.keep_checkpoints, enable_async=config.async_checkpoints
    )
  writer = None
  try:
    # Refuses another model's workdir, and a config the saved state cannot be resumed with.
    with guard.guard("restoring the newest checkpoint"):
      state = checkpoint_lib.restore_or_init(setup, checkpointer, resume_from=resume_from)
    if int(state.step) >= setup.total_steps:
      raise AlreadyFinished(workdir, int(state.step), setup.total_steps)
    if jax.process_index() == 0:  # the recipe beside its results, for `report` and for the record
      path = os.path.join(workdir, "config.json")
      write_errors.write_text(path, config.to_json_best_effort(indent=2), "config.json", checkpointer.directory)
    writer = metrics_lib.create_writer(workdir, resume_dir=checkpointer.directory)
    if int(state.step) == 0:
      writer.write_hparams(flatten_config(config))
    return _Loop(setup, checkpointer, writer, workdir, guard).run(state)
  finally:
    with guard.guard("closing the checkpoints (the last save's background writes)"):
      checkpointer.close()
    if writer is not None:
      writer.close()
    guard.close()


class _Loop:
  """One run from its state to `total_steps`: steps, and between them the logs, evaluations and checkpoints."""

  def __init__(self, setup: state_lib.Setup, checkpointer: checkpoint_lib.Checkpointer, writer, workdir: str, guard):
    self.setup, self.checkpointer, self.writer, self.workdir = setup, checkpointer, writer, workdir
    self.guard = guard  # a watchdog.Watchdog
    self.config = c = setup.config
    self.eval_every = max(1, setup.steps(c.eval_every_epochs))
    self.last_good_checkpoint = checkpointer.latest_step()
    self.evaluation, self.eval_seconds = None, 0.0
    self.train_metrics = None
    self.logged_loss = None  # the mean training loss of the last logging interval

  def run(self, state: state_lib.TrainState) -> dict:
    from clu import periodic_actions  # imports TensorFlow, like the data pipeline

    from imagenet_train.data import pipeline

    setup, c = self.setup, self.config
    start_step = int(state.step)
    logging.info(
      "Model %s, %d parameters; %d steps of %d images (%.1f epochs), starting at step %d",
      c.model,
      sum(np.prod(x.shape) for x in jax.tree.leaves(setup.abstract_state.params)),
      setup.total_steps,
      c.batch_size,
      setup.total_steps / setup.steps_per_epoch,
      start_step,
    )
    step_fn = jit_train_step(setup)
    scorer = evaluate.Scorer(setup, protocols.CENTER)  # compiled at the first evaluation, reused after
    local_batches = pipeline.train_batches(
      setup.builder,
      c.data,
      local_batch_size=sharding.local_batch_size(c.batch_size, setup.mesh),
      seed=c.seed,
      start_step=start_step,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    batches = sharding.prefetch_to_mesh(local_batches, setup.mesh, c.data.device_prefetch)
    hooks = [periodic_actions.ReportProgress(num_train_steps=setup.total_steps, writer=self.writer)]
    if c.profile and jax.process_index() == 0:
      hooks.append(
        periodic_actions.Profile(
          logdir=self.workdir, first_profile=c.profile_first_step, num_profile_steps=c.profile_steps
        )
      )
    run_start = self.log_time = time.perf_counter()
    self.log_step = step = start_step
    with (
      distributed.Preemption() as preemption,
      distributed.peers_alive(lambda: self.last_good_checkpoint, self.checkpointer.directory),
    ):
      while step < setup.total_steps:
        # The step's inputs and collectives, and the logging, evaluation and checkpoint after it.
        with self.guard.guard(f"training step {step + 1}"):
          with jax.profiler.StepTraceAnnotation("train", step_num=step):
            state, batch_metrics, learning_rate = step_fn(state, next(batches))
          step += 1
          self.train_metrics = batch_metrics if self.train_metrics is None else self.train_metrics.merge(batch_metrics)
          for hook in hooks:
            hook(step)
          if step % c.log_every_steps == 0 or step == setup.total_steps:
            self._log(state, step, learning_rate)
          if step % self.eval_every == 0 or step == setup.total_steps:
            state = self._evaluate(state, step, scorer)
          elif step % c.checkpoint_every_steps == 0:
            self._save(state, step)
          if preemption.reached(step):
            self._save(state, step, force=True)
            self.checkpointer.wait()
            raise UserError(
              f"received SIGTERM: saved a checkpoint at step {step} in {self.checkpointer.directory}; "
              "run the same command to resume",
              exit_code=143,
            )
    with self.guard.guard(f"saving the final checkpoint, step {step}"):
      self._save(state, step, force=True)
      self.checkpointer.wait()
    wall = time.perf_counter() - run_start
    self.writer.flush()
    return {
      **(self.evaluation.scalars() if self.evaluation else {}),
      "steps": step,
      "wall_time_s": wall,
      "eval_time_s": self.eval_seconds,
      "train_images_per_second": (step - start_step) * c.batch_size / max(wall - self.eval_seconds, 1e-9),
    }

  def _check_finite(self, state: state_lib.TrainState) -> None:
    bad = int(state.nonfinite_step)
    if bad >= 0:
      raise UserError(
        f"the training loss became NaN or infinite at step {bad + 1}; stopped without saving. "
        f"{checkpoint_lib.recovery_advice(self.checkpointer)}",
        exit_code=1,
      )

  def _train_loss(self) -> float | None:
    """The mean training loss since the last log, or the last log's: what a checkpoint records of the loss."""
    if self.train_metrics is not None:
      return float(self.train_metrics.compute()["loss"])
    return self.logged_loss

  def _log(self, state: state_lib.TrainState, step: int, learning_rate) -> None:
    self._check_finite(state)
    scalars = {f"{results.TRAIN}/{name}": float(value) for name, value in self.train_metrics.compute().items()}
    elapsed = time.perf_counter() - self.log_time
    scalars.update(
      {
        results.LEARNING_RATE: float(learning_rate),
        results.IMAGES_PER_SECOND: (step - self.log_step) * self.config.batch_size / elapsed,
        results.STEP_TIME_MS: 1000 * elapsed / (step - self.log_step),
      }
    )
    self.writer.write_scalars(step, scalars)
    self.logged_loss = scalars[results.TRAIN_LOSS]
    self.train_metrics, self.log_time, self.log_step = None, time.perf_counter(), step

  def _evaluate(self, state: state_lib.TrainState, step: int, scorer: evaluate.Scorer) -> state_lib.TrainState:
    """Evaluates (the center protocol), advances the plateau schedule, and saves a checkpoint ranked by top-1."""
    self._check_finite(state)
    eval_start = time.perf_counter()
    self.evaluation = evaluate.evaluate_state(
      self.setup, state, scorer, step, self.workdir, resume_dir=self.checkpointer.directory
    )
    self.writer.write_scalars(step, self.evaluation.scalars())
    top1 = self.evaluation.parameters[results.RAW].top1_accuracy
    state = state.replace(opt_state=optim.plateau_update(state.opt_state, top1, self.config.schedule.plateau))
    self._save(state, step, metrics={results.BEST_CHECKPOINT_METRIC: top1}, force=True)
    seconds = time.perf_counter() - eval_start
    self.eval_seconds += seconds
    self.log_time += seconds  # evaluation time is not training time
    return state

  def _save(self, state: state_lib.TrainState, step: int, metrics=None, force=False) -> None:
    self._check_finite(state)
    if self.checkpointer.latest_step() == step:  # e.g. a SIGTERM right after an evaluation's save
      return
    meta = checkpoint_lib.run_meta(self.setup, step, train_loss=self._train_loss())
    if self.checkpointer.save(step, state, meta, metrics=metrics, force=force):
      self.last_good_checkpoint = step


def flatten_config(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  """Scalar config fields by dotted name, for TensorBoard's hparams."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(flatten_config(value, f"{prefix}{key}."))
    elif isinstance(value, (bool, int, float, str)):
      flat[f"{prefix}{key}"] = value
  return flat
