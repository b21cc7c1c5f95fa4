"""Times the jitted train step on synthetic batches already on the device.

    python benchmarks/step_throughput.py --model=resnet50 --batch=256 [--dtype=bfloat16]
    python benchmarks/step_throughput.py --model=all --batch=64   # every registered model


Runs on whatever backend JAX finds (CPU here, GPU or TPU elsewhere) and imports no
TensorFlow, so it runs on accelerator machines that have JAX but not TensorFlow. It times the
same `train_step` the trainer jits (SGD with Nesterov momentum, weight decay, the full update),
reports the compile time, and the median over the timed steps after warm-up. The TFLOP/s
column is an estimate from the counted multiply-adds: a training step costs about three forward
passes, two floating-point operations per multiply-add.
"""

import ast
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from imagenet_train import models, sharding
from imagenet_train import state as state_lib
from imagenet_train import step as step_lib
from imagenet_train.config.schema import base_config
from imagenet_train.data import DatasetInfo
from imagenet_train.errors import UserError
from imagenet_train.models import counting

_MODEL = flags.DEFINE_string("model", "resnet50", "Registered model name.")
_BATCH = flags.DEFINE_integer("batch", 256, "Global batch size.")
_IMAGE = flags.DEFINE_integer("image_size", 0, "Input height and width; 0 for the model's native size.")
_CHANNELS = flags.DEFINE_integer("channels", 0, "Input channels; 0 for the model's native count.")
_OPTIONS = flags.DEFINE_multi_string("model_option", [], "A model constructor option as NAME=LITERAL, repeatable.")
_DTYPE = flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "Compute dtype.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")


def measure(
  name: str,
  batch: int,
  image_size: int,
  dtype: str,
  steps: int,
  warmup: int,
  channels: int = 0,
  options: dict | None = None,
) -> dict:
  native_shape, num_classes = models.native_input(name)
  shape = (image_size or native_shape[0], image_size or native_shape[1], channels or native_shape[2])
  config = base_config()
  config.model, config.dtype, config.batch_size = name, dtype, batch
  config.model_options.update(options or {})
  config.optimizer.sgd.nesterov = True
  config.num_train_steps = 1000
  mesh = sharding.create_mesh()
  state_lib.check_batch_sizes(config, mesh)
  setup = state_lib.build(
    config, mesh, DatasetInfo(num_classes, shape, num_train_examples=batch * 1000, num_eval_examples=batch)
  )
  state = setup.initial_state()
  rng = np.random.default_rng(0)
  batch_arrays = jax.device_put(
    {
      "image": rng.standard_normal((batch, *shape), dtype=np.float32),
      "label": rng.integers(0, num_classes, batch).astype(np.int32),
    },
    sharding.batch_sharding(mesh),
  )
  variables = {"params": setup.abstract_state.params, "batch_stats": setup.abstract_state.batch_stats}
  multiply_adds = counting.multiply_adds(setup.model, variables, shape)
  step = step_lib.jit_train_step(setup)
  start = time.perf_counter()
  compiled = step.lower(state, batch_arrays).compile()
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics, _ = compiled(state, batch_arrays)
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics, _ = compiled(state, batch_arrays)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  median = float(np.median(times))
  return {
    "model": name + "".join(f" {k}={v}" for k, v in (options or {}).items()),
    "batch": batch,
    "input": "x".join(map(str, shape)),
    "dtype": dtype,
    "gmacs": multiply_adds / 1e9,
    "images_per_s": batch / median,
    "median_step_ms": 1000 * median,
    "compile_s": compile_s,
    "tflops": 6 * multiply_adds * batch / median / 1e12,
    "loss_finite": bool(jnp.isfinite(metrics.compute()["loss"])),
  }


def main(argv):
  del argv
  names = models.names() if _MODEL.value == "all" else [_MODEL.value]
  options = {}
  for option in _OPTIONS.value:
    key, _, value = option.partition("=")
    try:
      options[key] = ast.literal_eval(value)
    except (SyntaxError, ValueError):
      options[key] = value  # a bare word such as stem=small
  device = jax.devices()[0]
  print(f"backend: {jax.default_backend()} ({len(jax.devices())} x {device.device_kind}), jax {jax.__version__}")
  print(
    f"| {'model':36s} | batch | {'input':11s} | dtype    | GMACs/image | images/s | median step (ms) | "
    "TFLOP/s (est.) | compile (s) |"
  )
  print(
    f"|{'-' * 38}|-------|{'-' * 13}|----------|-------------|----------|------------------|"
    "----------------|-------------|"
  )
  for name in names:
    try:
      row = measure(
        name, _BATCH.value, _IMAGE.value, _DTYPE.value, _STEPS.value, _WARMUP.value, _CHANNELS.value, options
      )
    except UserError as error:
      if len(names) == 1:
        raise SystemExit(f"error: {error}") from None
      print(f"| {name:36s} | skipped: {error}", flush=True)  # one model's options must not stop the table
      continue
    print(
      f"| {row['model']:36s} | {row['batch']:5d} | {row['input']:11s} | {row['dtype']:8s} | "
      f"{row['gmacs']:11.3f} | {row['images_per_s']:8.1f} | {row['median_step_ms']:16.1f} | "
      f"{row['tflops']:14.3f} | {row['compile_s']:11.1f} |",
      flush=True,
    )


if __name__ == "__main__":
  app.run(main)
