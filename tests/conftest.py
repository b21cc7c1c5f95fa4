"""Shared fixtures: 8 simulated CPU devices, small Fashion-MNIST IDX files, tiny configs."""

import os

# Must precede the first jax import anywhere in the test session. The suite's time is mostly XLA
# compiling on the CPU; without LLVM's optimisations it compiles two to three times faster
# (GoogLeNet's smoke initialisation: 12.6 s to 3.7 s), and the tests' tiny programs run about as fast.
QUICK_COMPILE = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = " ".join(
  [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8", QUICK_COMPILE]
)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gzip
import importlib.util
import pathlib
import struct

import numpy as np
import pytest

from imagenet_train.data import fashion_mnist_local

REPO = pathlib.Path(__file__).resolve().parents[1]
DEBIAN_DIR = fashion_mnist_local.DEFAULT_MANUAL_DIR
NUM_TRAIN, NUM_TEST = 512, 250  # 250 divides no batch size the tests use


def xla_flags(devices: int | None = None) -> str:
  """XLA_FLAGS for a subprocess of the tests: `devices` simulated CPU devices (XLA's default: one)."""
  return " ".join(filter(None, [devices and f"--xla_force_host_platform_device_count={devices}", QUICK_COMPILE]))


def load_config(name: str = "default.py", arg: str | None = None):
  spec = importlib.util.spec_from_file_location(f"config_{name}", REPO / "configs" / name)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def write_idx(path: str, array: np.ndarray) -> None:
  """Writes a uint8 array as an IDX file, as Fashion-MNIST ships them, gzipped when `path` ends in .gz."""
  header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _images_and_labels(count: int, offset: int, rng):
  """Real Fashion-MNIST images when Debian's package is installed, else class-coded patterns."""
  if not fashion_mnist_local.missing_files(DEBIAN_DIR):
    split = "train" if offset == 0 else "t10k"
    images = fashion_mnist_local.read_idx(fashion_mnist_local.idx_path(DEBIAN_DIR, f"{split}-images-idx3-ubyte"))
    labels = fashion_mnist_local.read_idx(fashion_mnist_local.idx_path(DEBIAN_DIR, f"{split}-labels-idx1-ubyte"))
    return images[:count], labels[:count]
  labels = rng.integers(0, 10, count).astype(np.uint8)
  images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
  for image, label in zip(images, labels):
    image[2 * label : 2 * label + 6, 4:24] += 180  # a bar whose height encodes the class
  return images, labels


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory) -> str:
  """A manual_dir of small IDX files: 512 training and 250 test images."""
  directory = tmp_path_factory.mktemp("fashion_mnist_idx")
  rng = np.random.default_rng(0)
  for split, count, offset in (("train", NUM_TRAIN, 0), ("t10k", NUM_TEST, 1)):
    images, labels = _images_and_labels(count, offset, rng)
    write_idx(str(directory / f"{split}-images-idx3-ubyte.gz"), images)
    write_idx(str(directory / f"{split}-labels-idx1-ubyte"), labels)
  return str(directory)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, fashion_mnist_dir) -> str:
  """A tfds data_dir holding the small dataset, prepared once by the project's builder."""
  directory = str(tmp_path_factory.mktemp("tfds"))
  from imagenet_train.data import pipeline

  config = tiny_config(fashion_mnist_dir, directory)
  pipeline.open_builder(config.data)
  return directory


def tiny_config(manual_dir: str, data_dir: str, steps: int = 3):
  """The default config shrunk to a few small steps; the code path is the full one."""
  config = load_config()
  config.data.manual_dir = manual_dir
  config.data.data_dir = data_dir
  config.batch_size = 16
  config.eval_batch_size = 48
  config.num_train_steps = steps
  config.log_every_steps = 1
  config.eval_every_epochs = 100.0
  config.checkpoint_every_steps = 2
  config.async_checkpoints = False
  return config


@pytest.fixture
def config(fashion_mnist_dir, data_dir):
  return tiny_config(fashion_mnist_dir, data_dir)


NUM_FAKE_TRAIN_PER_CLASS, NUM_FAKE_VAL = 8, 30  # 4 classes: 32 training images; 30 divides no eval batch used


@pytest.fixture(scope="session")
def fake_imagenet(tmp_path_factory):
  """Fake ILSVRC2012 tarballs (with a CMYK JPEG and a PNG named .JPEG), prepared once by tfds's
  own imagenet2012 builder; returns (manual_dir, data_dir, what was written)."""
  from imagenet_train.data import fake_imagenet as fake
  from imagenet_train.data import prepare

  root = tmp_path_factory.mktemp("fake_imagenet")
  manual_dir, data_dir = str(root / "manual"), str(root / "tfds")
  written = fake.write_tarballs(
    manual_dir, train_per_class=NUM_FAKE_TRAIN_PER_CLASS, num_val=NUM_FAKE_VAL, size=((40, 56), (40, 64))
  )
  prepare.prepare("imagenet2012", data_dir=data_dir, manual_dir=manual_dir)
  return manual_dir, data_dir, written


def imagenet_config(data_dir: str, pp_train: str, pp_eval: str = "decode|resize(8)"):
  from imagenet_train.config import recipes

  data = recipes.imagenet_data(pp_train, pp_eval)
  data.data_dir = data_dir
  data.shuffle_buffer = 64
  return data


def start_training(config, devices):
  """What the loop builds before its first step, on `devices`: (setup, initial state, the jitted step, one
  process's batches), for tests that run steps themselves."""
  from imagenet_train import state as state_lib
  from imagenet_train import step as step_lib
  from imagenet_train.data import pipeline

  setup = state_lib.prepare(config, devices)
  batches = pipeline.train_batches(
    setup.builder,
    config.data,
    local_batch_size=config.batch_size,
    seed=config.seed,
    start_step=0,
    process_index=0,
    process_count=1,
  )
  return setup, setup.initial_state(), step_lib.jit_train_step(setup), batches


def final_params(workdir, step: int | None = None):
  """(step, parameters) of a workdir's checkpoint at `step` (default: the newest), read as saved."""
  import jax
  import orbax.checkpoint as ocp

  from imagenet_train import checkpoint

  ckpt = checkpoint.Checkpointer(str(workdir), keep=10, enable_async=False)
  try:
    step = ckpt.latest_step() if step is None else step
    restored = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return step, jax.device_get(restored["state"]["params"])
  finally:
    ckpt.close()
