"""The training loop. `train_step` and `eval_step` are pure functions jitted over the mesh.

This is where config, data, model, optimizer, metrics and checkpoints meet. The loop never
waits for the devices except when it writes metrics, evaluates or checkpoints.
"""

import contextlib
import dataclasses
import functools
import os
import signal
import time
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath

from imagenet_train import checkpoint as checkpoint_lib
from imagenet_train import metrics as metrics_lib
from imagenet_train import models, optim, sharding
from imagenet_train.data import DatasetInfo
from imagenet_train.errors import UserError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  # Averages of the parameters and BatchNorm statistics kept beside them, by name ("ema",
  # "polyak"), each {"params", "batch_stats"}; empty when config.averaging asks for none.
  averages: Any
  # The first step whose loss was not finite, or -1: read only when the host syncs anyway.
  nonfinite_step: jax.Array


def compute_dtype(config) -> Any:
  if config.dtype not in DTYPES:
    raise UserError(f"unknown dtype {config.dtype!r}: use one of {', '.join(DTYPES)} in --config.dtype")
  return DTYPES[config.dtype]


def create_model(config, num_classes: int):
  return models.create(config.model, num_classes=num_classes, dtype=compute_dtype(config),
                       **config.model_options.to_dict())


def init_variables(model, image_shape, seed: int):
  """The model's variables; parameters a model splits over the mesh come boxed with their specs."""
  return model.init({"params": jax.random.key(seed), "dropout": jax.random.key(seed)},
                    jnp.zeros((1, *image_shape), jnp.float32), train=False)


def init_state(model, tx, image_shape, seed: int, averages: tuple[str, ...] = ()) -> TrainState:
  """Initial state; runs under jit so that XLA places it straight into its sharding."""
  return state_from_variables(nn.meta.unbox(init_variables(model, image_shape, seed)), tx, averages)


def state_from_variables(variables, tx, averages: tuple[str, ...] = ()) -> TrainState:
  """A step-0 state; each named average starts at the initial parameters."""
  params, batch_stats = variables["params"], variables.get("batch_stats", {})
  return TrainState(step=jnp.zeros([], jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params),
                    averages={name: {"params": params, "batch_stats": batch_stats} for name in averages},
                    nonfinite_step=jnp.full([], -1, jnp.int32))


def averages_kept(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  a = config.averaging
  if not 0.0 <= a.ema_decay < 1.0:
    raise UserError(f"--config.averaging.ema_decay={a.ema_decay} must lie in [0, 1): 0 keeps no average, "
                    "0.9999 is the usual choice")
  return (("ema",) if a.ema_decay else ()) + (("polyak",) if a.polyak else ())


def update_averages(averages: dict, current: dict, step: jax.Array, *, ema_decay: float, polyak_start_step: int):
  """Advances each average by the state after `step` updates.

  ema: TensorFlow's ExponentialMovingAverage with num_updates, as Inception-v3 was evaluated:
  the decay is min(ema_decay, (1 + step) / (10 + step)), so that early averages are not
  dominated by the random initialisation. polyak: the arithmetic mean of the states since
  `polyak_start_step` (Polyak and Juditsky, 1992), as GoogLeNet's final model was; before that
  step it follows the parameters."""
  new = {}
  step = step.astype(jnp.float32)
  for name, average in averages.items():
    if name == "ema":
      weight = 1.0 - jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
    else:
      weight = 1.0 / jnp.maximum(step - polyak_start_step + 1.0, 1.0)
    new[name] = jax.tree.map(lambda a, x: a + weight.astype(a.dtype) * (x - a), average, current)
  return new


def with_average(state: TrainState, name: str) -> TrainState:
  """The state with the parameters and BatchNorm statistics of average `name`, for evaluation."""
  return state.replace(params=state.averages[name]["params"], batch_stats=state.averages[name]["batch_stats"])


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float):
  """Labels are class indices, smoothed here, or target distributions (the `onehot` op's,
  already smoothed by the pipeline), used as they are."""
  if labels.ndim == logits.ndim:
    targets = labels.astype(jnp.float32)
  else:
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def model_input(images: jax.Array, dtype, device_normalize: tuple | None) -> jax.Array:
  """The batch's images in the compute dtype, normalised here when the pipeline left that to the device."""
  if device_normalize is not None:
    mean, std = (jnp.asarray(stat, jnp.float32) for stat in device_normalize)
    images = (images.astype(jnp.float32) / 255.0 - mean) / std
  return images.astype(dtype)


def train_step(state: TrainState, batch: dict, *, model, tx, schedule: Callable, num_classes: int,
               label_smoothing: float, dtype, seed: int, device_normalize: tuple | None = None,
               ema_decay: float = 0.0, polyak_start_step: int = 0):
  """One SGD step on a global batch; BatchNorm statistics span the whole global batch."""
  dropout_key = jax.random.fold_in(jax.random.key(seed), state.step)

  def loss_fn(params):
    logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                  model_input(batch["image"], dtype, device_normalize), train=True,
                                  mutable=["batch_stats", "aux_logits"],
                                  rngs={"dropout": dropout_key})
    losses = cross_entropy(logits, batch["label"], num_classes, label_smoothing)
    # Auxiliary classifiers (GoogLeNet, Inception-v3) sow their logits; each adds its weighted
    # loss to the objective, while the reported metrics stay those of the main classifier.
    aux_loss = sum(cross_entropy(aux, batch["label"], num_classes, label_smoothing).mean()
                   for aux in jax.tree.leaves(updates.get("aux_logits", {})))
    loss = losses.mean() + getattr(model, "aux_loss_weight", 0.0) * aux_loss
    return loss, (logits, losses, updates.get("batch_stats", {}))

  (loss, (logits, losses, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  # A finite loss can still give an overflowing update; either makes the new state unusable.
  finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(updates))
  nonfinite_step = jnp.where((state.nonfinite_step < 0) & ~finite, state.step, state.nonfinite_step)
  averages = update_averages(state.averages, {"params": params, "batch_stats": batch_stats}, state.step + 1,
                             ema_decay=ema_decay, polyak_start_step=polyak_start_step)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
                            averages=averages, nonfinite_step=nonfinite_step)
  step_metrics = metrics_lib.classification_metrics(logits, batch["label"], losses)
  learning_rate = schedule(state.step) * optim.learning_rate_factor(state.opt_state)
  return new_state, step_metrics, learning_rate


def eval_step(state: TrainState, batch: dict, *, model, num_classes: int, dtype, device_normalize: tuple | None = None):
  logits = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                       model_input(batch["image"], dtype, device_normalize), train=False)
  losses = cross_entropy(logits, batch["label"], num_classes, 0.0)
  return metrics_lib.classification_metrics(logits, batch["label"], losses, mask=batch["mask"])


@dataclasses.dataclass
class Setup:
  """Everything a run derives from its config before the first step."""
  config: ml_collections.ConfigDict
  mesh: Any
  builder: Any
  info: Any
  model: Any
  tx: Any
  schedule: Callable
  steps_per_epoch: int
  total_steps: int
  state_sharding: Any
  abstract_state: Any


def check_workdir(workdir: str) -> None:
  """Creates the workdir, local or on a bucket (gs://), and proves it writable."""
  try:
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_test_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as error:
    raise UserError(f"cannot write to workdir {workdir} ({error.strerror}): pass a --workdir you can write "
                    "to") from None


def prepare(config: ml_collections.ConfigDict, devices=None) -> Setup:
  """Validates the config, opens the dataset, and builds everything the loop needs."""
  from imagenet_train.data import pipeline  # TensorFlow is imported only when data is read.

  mesh = sharding.create_mesh(devices, config.model_parallelism)
  check_batch_sizes(config, mesh)
  builder = pipeline.open_builder(config.data)
  return build(config, mesh, pipeline.dataset_info(builder, config.data), builder)


def check_batch_sizes(config: ml_collections.ConfigDict, mesh) -> None:
  replicas = mesh.shape[sharding.DATA_AXIS]
  for name, size in (("batch_size", config.batch_size), ("eval_batch_size", config.eval_batch_size)):
    if size % replicas:
      raise UserError(f"--config.{name}={size} is not divisible by the {replicas} data-parallel devices: "
                      f"use a multiple of {replicas}")


def build(config: ml_collections.ConfigDict, mesh, info: DatasetInfo, builder=None) -> Setup:
  """Model, optimizer and state layout for a dataset of this shape; imports no TensorFlow."""
  # An evaluation-only dataset (imagenet_v2) has no training examples: one nominal step per epoch.
  steps_per_epoch = info.num_train_examples // config.batch_size if info.num_train_examples else 1
  if steps_per_epoch == 0:
    raise UserError(f"--config.batch_size={config.batch_size} exceeds the {info.num_train_examples} "
                    "training examples: lower it")
  total_steps = config.num_train_steps if config.num_train_steps > 0 else int(config.num_epochs * steps_per_epoch)
  model = create_model(config, info.num_classes)
  tx, schedule = optim.create_optimizer(config, steps_per_epoch, total_steps)
  try:
    boxed = jax.eval_shape(functools.partial(init_variables, model, info.image_shape, config.seed))
  except ValueError as error:  # models reject inputs they cannot read, naming the minimum
    raise UserError(f"model {config.model!r} cannot take {info.image_shape} images: {error}") from None
  averages = averages_kept(config)
  abstract = jax.eval_shape(lambda v: state_from_variables(v, tx, averages), nn.meta.unbox(boxed))  # one trace
  state_sharding = sharding.state_sharding(mesh, tx, abstract, nn.get_partition_spec(boxed["params"]))
  abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                abstract, state_sharding)
  return Setup(config, mesh, builder, info, model, tx, schedule, steps_per_epoch, total_steps, state_sharding,
               abstract_state)


def jit_train_step(setup: Setup):
  c = setup.config
  step = functools.partial(train_step, model=setup.model, tx=setup.tx, schedule=setup.schedule,
                           num_classes=setup.info.num_classes, label_smoothing=c.label_smoothing,
                           dtype=compute_dtype(c), seed=c.seed, device_normalize=setup.info.device_normalize,
                           ema_decay=c.averaging.ema_decay,
                           polyak_start_step=int(round(c.averaging.polyak_start_epochs * setup.steps_per_epoch)))
  replicated = sharding.replicated(setup.mesh)
  return jax.jit(step, in_shardings=(setup.state_sharding, sharding.batch_sharding(setup.mesh)),
                 out_shardings=(setup.state_sharding, replicated, replicated), donate_argnums=0)


def jit_eval_step(setup: Setup):
  return jax.jit(functools.partial(eval_step, model=setup.model, num_classes=setup.info.num_classes,
                                   dtype=compute_dtype(setup.config), device_normalize=setup.info.device_normalize),
                 in_shardings=(setup.state_sharding, sharding.batch_sharding(setup.mesh)),
                 out_shardings=sharding.replicated(setup.mesh))


def evaluate(setup: Setup, state: TrainState, step=None) -> metrics_lib.ClassificationMetrics:
  """Metrics over every example of the eval split exactly once, on every process alike.

  Pass the `jit_eval_step(setup)` of an earlier call as `step` to reuse its compilation."""
  from imagenet_train.data import pipeline

  c = setup.config
  step = step or jit_eval_step(setup)
  batches = pipeline.eval_batches(setup.builder, c.data,
                                  local_batch_size=sharding.local_batch_size(c.eval_batch_size, setup.mesh),
                                  process_index=jax.process_index(), process_count=jax.process_count())
  total = None
  for batch in sharding.prefetch_to_mesh(batches, setup.mesh, c.data.device_prefetch):
    batch_metrics = step(state, batch)
    total = batch_metrics if total is None else total.merge(batch_metrics)
  return total


def evaluate_all(setup: Setup, state: TrainState, step=None) -> dict[str, float]:
  """`evaluate`'s scalars for the parameters ("eval/...") and for each average ("eval_ema/...")."""
  results = _scalars("eval", evaluate(setup, state, step))
  for name in state.averages:
    results.update(_scalars(f"eval_{name}", evaluate(setup, with_average(state, name), step)))
  return results


def _scalars(prefix: str, collection: metrics_lib.ClassificationMetrics) -> dict[str, float]:
  return {f"{prefix}/{name}": float(value) for name, value in collection.compute().items()}


class _Preemption:
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
def _peers_alive(last_checkpoint: Callable[[], int | None], directory):
  """With several processes, a collective that fails because another process died is the
  user's signal to look at that process's log and resume, not a bug: it ends in one line."""
  try:
    yield
  except jax.errors.JaxRuntimeError as error:
    if jax.process_count() == 1:
      raise
    step = last_checkpoint()
    resume = f"rerun the same command to resume from step {step} in {directory}" if step is not None else (
        "rerun the same command")
    reason = str(error).strip().splitlines()[0][:200]
    raise UserError(f"a collective with the other processes failed ({reason}): another task died or stopped "
                    f"answering; check its log, then {resume}", exit_code=1) from None


def _checkpoint_meta(setup: Setup, state_step: int) -> dict:
  c = setup.config
  return {"model": c.model, "param_shapes": checkpoint_lib.param_shapes(setup.abstract_state.params),
          "step": state_step, "epoch": state_step / setup.steps_per_epoch, "seed": c.seed,
          "batch_size": c.batch_size, "examples_seen": state_step * c.batch_size,
          "config": c.to_json_best_effort()}


def restore_or_init(setup: Setup, checkpointer: checkpoint_lib.Checkpointer, step: int | None = None) -> TrainState:
  """The state at `step` (default: the newest checkpoint), or a fresh one if there is none."""
  c = setup.config
  step = checkpointer.latest_step() if step is None else step
  if step is None:
    init = jax.jit(functools.partial(init_state, setup.model, setup.tx, setup.info.image_shape, c.seed,
                                     averages_kept(c)), out_shardings=setup.state_sharding)
    return init()
  meta = checkpointer.check_compatible(step, c.model, checkpoint_lib.param_shapes(setup.abstract_state.params))
  if meta["batch_size"] != c.batch_size or meta["seed"] != c.seed:
    logging.warning("Resuming with batch_size/seed %s/%s where the checkpoint used %s/%s: the data stream "
                    "will differ from an uninterrupted run.", c.batch_size, c.seed, meta["batch_size"], meta["seed"])
  logging.info("Restoring step %d from %s", step, checkpointer.directory)
  return checkpointer.restore(step, setup.abstract_state)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict:
  """Trains to `total_steps`, resuming from the workdir's newest checkpoint; returns the summary."""
  from clu import periodic_actions  # imports TensorFlow, like the data pipeline

  from imagenet_train.data import pipeline

  check_workdir(workdir)
  setup = prepare(config, devices)
  if jax.process_index() == 0:  # the recipe beside its results, for `report` and for the record
    (epath.Path(workdir) / "config.json").write_text(config.to_json_best_effort(indent=2))
  if not setup.info.num_train_examples:
    raise UserError(f"dataset {config.data.name!r} has no training split (--config.data.train_split is empty): "
                    "use it with `evaluate`, or train on a dataset that has one")
  c = config
  checkpointer = checkpoint_lib.Checkpointer(workdir, keep=c.keep_checkpoints, enable_async=c.async_checkpoints)
  writer = None
  try:
    state = restore_or_init(setup, checkpointer)  # refuses another model's workdir before writing to it
    writer = metrics_lib.create_writer(workdir)
    start_step = int(state.step)
    if start_step == 0:
      writer.write_hparams(flatten_config(c))
    logging.info("Model %s, %d parameters; %d steps of %d images (%.1f epochs), starting at step %d",
                 c.model, sum(np.prod(x.shape) for x in jax.tree.leaves(setup.abstract_state.params)),
                 setup.total_steps, c.batch_size, setup.total_steps / setup.steps_per_epoch, start_step)
    step_fn = jit_train_step(setup)
    eval_step_fn = jit_eval_step(setup)  # compiled at the first evaluation, reused after
    local_batches = pipeline.train_batches(
        setup.builder, c.data, local_batch_size=sharding.local_batch_size(c.batch_size, setup.mesh), seed=c.seed,
        start_step=start_step, process_index=jax.process_index(), process_count=jax.process_count())
    batches = sharding.prefetch_to_mesh(local_batches, setup.mesh, c.data.device_prefetch)

    hooks = [periodic_actions.ReportProgress(num_train_steps=setup.total_steps, writer=writer)]
    if c.profile and jax.process_index() == 0:
      hooks.append(periodic_actions.Profile(logdir=workdir, first_profile=c.profile_first_step,
                                            num_profile_steps=c.profile_steps))
    eval_every = max(1, int(round(c.eval_every_epochs * setup.steps_per_epoch)))
    train_metrics, learning_rate = None, None
    last_good_checkpoint = checkpointer.latest_step()
    eval_results, eval_seconds = {}, 0.0
    run_start = log_time = time.perf_counter()
    log_step = start_step
    step = start_step

    def check_finite():
      bad = int(state.nonfinite_step)
      if bad >= 0:
        where = (f"step {last_good_checkpoint} in {checkpointer.directory}" if last_good_checkpoint is not None
                 else "none was written")
        raise UserError(f"the training loss became NaN or infinite at step {bad + 1}; stopped without saving. "
                        f"The last good checkpoint is {where}: lower --config.learning_rate and resume", exit_code=1)

    def save(metrics=None, force=False):
      nonlocal last_good_checkpoint
      check_finite()
      if checkpointer.latest_step() == step:  # e.g. a SIGTERM right after an evaluation's save
        return
      if checkpointer.save(step, state, _checkpoint_meta(setup, step), metrics=metrics, force=force):
        last_good_checkpoint = step

    with _Preemption() as preemption, _peers_alive(lambda: last_good_checkpoint, checkpointer.directory):
      while step < setup.total_steps:
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
          state, batch_metrics, learning_rate = step_fn(state, next(batches))
        step += 1
        train_metrics = batch_metrics if train_metrics is None else train_metrics.merge(batch_metrics)
        for hook in hooks:
          hook(step)
        if step % c.log_every_steps == 0 or step == setup.total_steps:
          check_finite()
          scalars = _scalars("train", train_metrics)
          elapsed = time.perf_counter() - log_time
          scalars.update({"train/learning_rate": float(learning_rate),
                          "train/images_per_second": (step - log_step) * c.batch_size / elapsed,
                          "train/step_time_ms": 1000 * elapsed / (step - log_step)})
          writer.write_scalars(step, scalars)
          train_metrics, log_time, log_step = None, time.perf_counter(), step
        if step % eval_every == 0 or step == setup.total_steps:
          check_finite()
          eval_start = time.perf_counter()
          eval_results = evaluate_all(setup, state, eval_step_fn)
          writer.write_scalars(step, eval_results)
          state = state.replace(opt_state=optim.plateau_update(state.opt_state, eval_results["eval/top1"],
                                                               c.schedule.plateau))
          save(metrics={checkpoint_lib.BEST_METRIC: eval_results["eval/top1"]}, force=True)
          eval_seconds += time.perf_counter() - eval_start
          log_time += time.perf_counter() - eval_start  # evaluation time is not training time
        elif step % c.checkpoint_every_steps == 0:
          save()
        if preemption.reached(step):
          save(force=True)
          checkpointer.wait()
          raise UserError(f"received SIGTERM: saved a checkpoint at step {step} in {checkpointer.directory}; "
                          "run the same command to resume", exit_code=143)
    save(force=True)
    checkpointer.wait()
    wall = time.perf_counter() - run_start
    summary = {**eval_results, "steps": step, "wall_time_s": wall, "eval_time_s": eval_seconds,
               "train_images_per_second": (step - start_step) * c.batch_size / max(wall - eval_seconds, 1e-9)}
    writer.flush()
    return summary
  finally:
    checkpointer.close()
    if writer is not None:
      writer.close()


def flatten_config(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  """Scalar config fields by dotted name, for TensorBoard's hparams."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(flatten_config(value, f"{prefix}{key}."))
    elif isinstance(value, (bool, int, float, str)):
      flat[f"{prefix}{key}"] = value
  return flat


def restore_for_evaluation(config: ml_collections.ConfigDict, workdir: str, which: str = "latest"):
  """(setup, state, step) of the workdir's latest, best or given-step checkpoint."""
  setup = prepare(config)
  checkpointer = checkpoint_lib.Checkpointer(workdir, keep=config.keep_checkpoints, enable_async=False)
  try:
    step = {"latest": checkpointer.latest_step, "best": checkpointer.best_step}.get(which, lambda: int(which))()
    if step is None or step not in checkpointer.manager.all_steps():
      raise UserError(f"no {which} checkpoint in {checkpointer.directory}: train first, or pass --checkpoint=STEP "
                      f"from {list(checkpointer.manager.all_steps())}")
    state = restore_or_init(setup, checkpointer, step)
  finally:
    checkpointer.close()
  return setup, state, step


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str, which: str = "latest") -> dict:
  """Restores the workdir's latest, best or given-step checkpoint and evaluates it as training does."""
  setup, state, step = restore_for_evaluation(config, workdir, which)
  return {**evaluate_all(setup, state), "step": step}


def import_weights(config: ml_collections.ConfigDict, source: str, workdir: str, keep_init: str | None = None) -> int:
  """Writes a step-0 checkpoint of `config` holding the PyTorch weights in `source` to `workdir`.

  `evaluate` then scores the weights as they are, and `train` fine-tunes from them. Returns the
  number of tensors imported."""
  from imagenet_train import weights

  tensors = weights.read_state_dict(source)  # a bad file fails before anything is created
  check_workdir(workdir)
  setup = prepare(config)
  checkpointer = checkpoint_lib.Checkpointer(workdir, keep=config.keep_checkpoints, enable_async=False)
  try:
    if checkpointer.latest_step() is not None:
      raise UserError(f"{checkpointer.directory} already holds checkpoints: pass an empty --out directory")
    state = jax.device_get(restore_or_init(setup, checkpointer))
    variables = weights.to_variables(tensors, {"params": state.params, "batch_stats": state.batch_stats},
                                     model=config.model, source=source, keep_init=keep_init)
    state = state.replace(params=variables["params"], batch_stats=variables.get("batch_stats", {}))
    meta = {**_checkpoint_meta(setup, 0), "imported_from": os.path.abspath(source)}
    checkpointer.save(0, jax.device_put(state, setup.state_sharding), meta, force=True)
    checkpointer.wait()
  finally:
    checkpointer.close()
  return len(tensors)
