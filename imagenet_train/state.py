"""The train state, its initialisation and parameter averages, and the `Setup` a run derives from its config.

`build` needs only the dataset's shape (a `DatasetInfo`), so the model, optimizer and sharded state layout can be
made without TensorFlow or data; `prepare` opens the dataset first.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from imagenet_train import models, optim, sharding
from imagenet_train.config import schema
from imagenet_train.config.schema import epochs_to_steps
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
  return models.create(
    config.model, num_classes=num_classes, dtype=compute_dtype(config), **config.model_options.to_dict()
  )


def init_variables(model, image_shape, seed: int):
  """The model's variables; parameters a model splits over the mesh come boxed with their specs."""
  return model.init(
    {"params": jax.random.key(seed), "dropout": jax.random.key(seed)},
    jnp.zeros((1, *image_shape), jnp.float32),
    train=False,
  )


def init_state(model, tx, image_shape, seed: int, averages: tuple[str, ...] = ()) -> TrainState:
  """Initial state, unplaced; `Setup.initial_state` runs it under jit into the state's sharding."""
  return state_from_variables(nn.meta.unbox(init_variables(model, image_shape, seed)), tx, averages)


def state_from_variables(variables, tx, averages: tuple[str, ...] = ()) -> TrainState:
  """A step-0 state; each named average starts at the initial parameters."""
  params, batch_stats = variables["params"], variables.get("batch_stats", {})
  return TrainState(
    step=jnp.zeros([], jnp.int32),
    params=params,
    batch_stats=batch_stats,
    opt_state=tx.init(params),
    averages={name: {"params": params, "batch_stats": batch_stats} for name in averages},
    nonfinite_step=jnp.full([], -1, jnp.int32),
  )


def averages_kept(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  a = config.averaging  # its values within their rules (config.schema)
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
    new[name] = _toward(average, current, weight)
  return new


def _toward(average, current, weight: jax.Array):
  """average + weight * (current - average), leaf by leaf."""
  return jax.tree.map(lambda a, x: a + weight.astype(a.dtype) * (x - a), average, current)


def with_average(state: TrainState, name: str) -> TrainState:
  """The state with the parameters and BatchNorm statistics of average `name`, for evaluation."""
  return state.replace(params=state.averages[name]["params"], batch_stats=state.averages[name]["batch_stats"])


def parameter_sets(state: TrainState) -> dict[str, TrainState]:
  """The states evaluation scores: the parameters as trained ("raw") and each average the state keeps."""
  return {"raw": state, **{name: with_average(state, name) for name in state.averages}}


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

  def initial_state(self) -> TrainState:
    """The step-0 state, initialised under jit so that XLA places it straight into its sharding."""
    c = self.config
    init = functools.partial(init_state, self.model, self.tx, self.info.image_shape, c.seed, averages_kept(c))
    return jax.jit(init, out_shardings=self.state_sharding)()

  def steps(self, epochs: float) -> int:
    return epochs_to_steps(epochs, self.steps_per_epoch)


def prepare(config: ml_collections.ConfigDict, devices=None) -> Setup:
  """Validates the config, opens the dataset, and builds everything the loop needs."""
  from imagenet_train.data import pipeline  # TensorFlow is imported only when data is read.

  schema.check(config)
  mesh = sharding.create_mesh(devices, config.model_parallelism)
  check_batch_sizes(config, mesh)
  builder = pipeline.open_builder(config.data)
  return build(config, mesh, pipeline.dataset_info(builder, config.data), builder)


def _check_eval_shape(config: ml_collections.ConfigDict, model, boxed, info: DatasetInfo) -> None:
  """Refuses an eval spec whose images the model, built for the training images, cannot score: found here, before
  the workdir is touched, rather than at the first evaluation hours into the run."""
  shape = info.eval_image_shape
  if shape is None or shape == info.image_shape:
    return
  variables = {name: value for name, value in nn.meta.unbox(boxed).items() if name in ("params", "batch_stats")}
  try:
    out = jax.eval_shape(
      functools.partial(model.apply, train=False), variables, jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    )
  except (ValueError, TypeError, flax.errors.FlaxError) as error:
    out = str(error).splitlines()[0].split(" (https://")[0]
  if getattr(out, "shape", None) != (1, info.num_classes):
    reason = out if isinstance(out, str) else f"it gives scores of shape {out.shape}"
    raise UserError(
      f"model {config.model!r} is built for {info.image_shape} training images but --config.data.pp_eval emits "
      f"{shape} ones, which it cannot score ({reason}): make pp_eval end in a crop or resize to "
      f"{info.image_shape[0]}x{info.image_shape[1]}"
    )


def check_batch_sizes(config: ml_collections.ConfigDict, mesh) -> None:
  replicas = mesh.shape[sharding.DATA_AXIS]
  for name, size in (("batch_size", config.batch_size), ("eval_batch_size", config.eval_batch_size)):
    if size % replicas:
      raise UserError(
        f"--config.{name}={size} is not divisible by the {replicas} data-parallel devices: use a multiple of {replicas}"
      )


def build(config: ml_collections.ConfigDict, mesh, info: DatasetInfo, builder=None) -> Setup:
  """Model, optimizer and state layout for a dataset of this shape; imports no TensorFlow."""
  # An evaluation-only dataset (imagenet_v2) has no training examples: one nominal step per epoch.
  steps_per_epoch = info.num_train_examples // config.batch_size if info.num_train_examples else 1
  if steps_per_epoch == 0:
    raise UserError(
      f"--config.batch_size={config.batch_size} exceeds the {info.num_train_examples} training examples: lower it"
    )
  total_steps = (
    config.num_train_steps if config.num_train_steps > 0 else epochs_to_steps(config.num_epochs, steps_per_epoch)
  )
  model = create_model(config, info.num_classes)
  tx, schedule = optim.create_optimizer(config, steps_per_epoch, total_steps)
  try:
    boxed = jax.eval_shape(functools.partial(init_variables, model, info.image_shape, config.seed))
  except ValueError as error:  # models reject inputs they cannot read, naming the minimum
    raise UserError(f"model {config.model!r} cannot take {info.image_shape} images: {error}") from None
  _check_eval_shape(config, model, boxed, info)
  averages = averages_kept(config)
  abstract = jax.eval_shape(lambda v: state_from_variables(v, tx, averages), nn.meta.unbox(boxed))  # one trace
  state_sharding = sharding.state_sharding(mesh, tx, abstract, nn.get_partition_spec(boxed["params"]))
  abstract_state = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sharding
  )
  return Setup(
    config, mesh, builder, info, model, tx, schedule, steps_per_epoch, total_steps, state_sharding, abstract_state
  )
