"""`prepare`: builds a tfds dataset once, checking every image decodes before it is written.

tfds stores the encoded bytes it is given without decoding them, so a corrupt JPEG in a
user's tarball would otherwise surface hours into training as an opaque tf.data error. Here
each builder's example generator is guarded: every image is decoded (in a thread pool, as
TensorFlow's decoders release the GIL) before tfds writes it, and a corrupt one either stops
the build with its file named or is left out and counted. tfds writes into a temporary
folder and renames it when complete, so a stopped build leaves no partial dataset behind.
"""

import concurrent.futures
import dataclasses
import itertools
import os
from collections.abc import Iterator

import tensorflow as tf
import tensorflow_datasets as tfds

from imagenet_train.data import fashion_mnist_local, op_error_reason
from imagenet_train.errors import UserError

LOCAL_BUILDERS = {"fashion_mnist_local": fashion_mnist_local.FashionMnistLocal}
# The manual_dir files that builders reading from it need, to check them before tfds starts.
IMAGENET_TRAIN_TAR, IMAGENET_VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"
MANUAL_FILES = {"imagenet2012": (IMAGENET_TRAIN_TAR, IMAGENET_VAL_TAR)}
_CHUNK = 256  # examples decoded concurrently while tfds writes the previous ones


@dataclasses.dataclass
class Report:
  data_dir: str
  examples: dict[str, int]
  skipped: list[str]
  already_prepared: bool = False


def builder_for(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The tfds builder named `name` (`imagenet_resized/64x64` style for a builder config)."""
  if name in LOCAL_BUILDERS:
    return LOCAL_BUILDERS[name](data_dir=data_dir)
  try:
    return tfds.builder(name, data_dir=data_dir)
  except (tfds.core.registered.DatasetNotFoundError, ValueError):  # ValueError: a name tfds cannot even parse
    raise UserError(
      f"unknown tfds dataset {name!r}: give a tfds name such as imagenet2012, imagenet_v2, "
      "imagenet_resized/64x64, cifar10 or fashion_mnist, or the local fashion_mnist_local"
    ) from None


def check_manual_dir(name: str, manual_dir: str | None):
  """Names the files a manual-download builder expects, and where, before tfds runs."""
  expected = MANUAL_FILES.get(name.split("/")[0])
  if expected is None:
    return
  if not manual_dir:
    raise UserError(
      f"{name} is built from files you download yourself: pass --manual_dir=DIR holding {' and '.join(expected)}"
    )
  present = sorted(os.listdir(manual_dir)) if os.path.isdir(manual_dir) else []
  missing = [file for file in expected if file not in present]
  if missing:
    lookalikes = [file for file in present if file.lower().startswith("ilsvrc") and file not in expected]
    found = f"; found {', '.join(lookalikes)}, named differently: rename to the expected names" if lookalikes else ""
    raise UserError(f"{name} expects {', '.join(expected)} in {manual_dir}; missing {', '.join(missing)}{found}")


def _image_keys(builder) -> list[str]:
  return [key for key, feature in builder.info.features.items() if isinstance(feature, tfds.features.Image)]


def _check_decodes(payload: bytes) -> str | None:
  """None when `payload` decodes as an image, else the decoder's complaint."""
  try:
    tf.io.decode_image(payload, expand_animations=False)
    return None
  except tf.errors.OpError as error:
    return op_error_reason(error.message)


def _first_problem(example: dict, image_keys: list[str]) -> str | None:
  payloads = [example[key] for key in image_keys if isinstance(example.get(key), bytes)]
  return next(filter(None, map(_check_decodes, payloads)), None)


def _guarded(generate, image_keys: list[str], skip_corrupt: bool, skipped: list[str]):
  """Wraps a builder's `_generate_examples` so that every image is decoded before it is kept."""

  def read(example):
    for key in image_keys:
      if hasattr(example.get(key), "read"):
        example[key] = example[key].read()
    return example

  def name_of(key, example):
    return str(example.get("file_name", key))

  def examples(*args, **kwargs) -> Iterator:
    pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count())
    source = iter(generate(*args, **kwargs))
    try:
      while chunk := [(key, read(example)) for key, example in itertools.islice(source, _CHUNK)]:
        problems = pool.map(lambda item: _first_problem(item[1], image_keys), chunk)
        for (key, example), problem in zip(chunk, problems):
          if problem is None:
            yield key, example
          elif skip_corrupt:
            skipped.append(name_of(key, example))
          else:
            raise UserError(
              f"corrupt image {name_of(key, example)} ({problem}): replace or delete it in the "
              "source, or pass --skip_corrupt to leave it out and count it"
            )
    finally:
      pool.shutdown(cancel_futures=True)

  return examples


def prepare(name: str, *, data_dir: str | None, manual_dir: str | None, skip_corrupt: bool = False) -> Report:
  """Builds `name` into `data_dir` once; a second call finds it prepared and does nothing."""
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  builder = builder_for(name, data_dir)
  if builder.is_prepared():
    return Report(str(builder.data_dir), _split_sizes(builder), [], already_prepared=True)
  if name in LOCAL_BUILDERS:
    manual_dir = manual_dir or fashion_mnist_local.DEFAULT_MANUAL_DIR
    missing = fashion_mnist_local.missing_files(manual_dir)
    if missing:
      raise UserError(
        f"Fashion-MNIST files {', '.join(missing)} are missing from {manual_dir}: run "
        "`sudo apt-get install dataset-fashion-mnist`, or pass --manual_dir=DIR holding the four "
        "IDX files"
      )
  check_manual_dir(name, manual_dir)
  skipped: list[str] = []
  builder._generate_examples = _guarded(builder._generate_examples, _image_keys(builder), skip_corrupt, skipped)
  download_config = tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir) if manual_dir else None)
  try:
    builder.download_and_prepare(download_config=download_config)
  except AssertionError as error:  # tfds's way of saying manual files are missing
    raise UserError(f"cannot build {name}: {' '.join(str(error).split())}") from None
  except (OSError, tfds.download.DownloadError) as error:
    raise UserError(f"cannot build {name}: {' '.join(str(error).split())[:300]}") from None
  return Report(str(builder.data_dir), _split_sizes(builder), skipped)


def _split_sizes(builder) -> dict[str, int]:
  return {split: info.num_examples for split, info in builder.info.splits.items()}
