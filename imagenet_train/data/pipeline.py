"""Per-host tf.data pipelines over tfds datasets, reproducible and resumable to the batch.

Training: each process reads its own even part of the train split. Epoch `e` is a shuffle of
that part seeded by (seed, e); each example's augmentation is seeded by (seed, e, position in
the epoch). The stream is therefore a pure function of the seed and the step, and a run resumed
at step k skips exactly the k * batch examples an uninterrupted run consumed before decoding
any of them.

Evaluation: each process reads its own even part of the eval split, every example exactly once,
padded with masked examples to a batch count that is the same on every process.
"""

import math
import os
from typing import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from imagenet_train.data import DatasetInfo, fashion_mnist_local, ops
from imagenet_train.errors import UserError

# Input pipelines run on the host; TensorFlow must never take accelerator memory.
tf.config.set_visible_devices([], "GPU")

LOCAL_BUILDERS = {"fashion_mnist_local": fashion_mnist_local.FashionMnistLocal}


def open_builder(data: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared tfds builder for `data.name`, preparing the project's local builders."""
  data_dir = os.path.expanduser(data.data_dir) if data.data_dir else None
  if data.name in LOCAL_BUILDERS:
    builder = LOCAL_BUILDERS[data.name](data_dir=data_dir)
    if not builder.is_prepared():
      missing = fashion_mnist_local.missing_files(data.manual_dir)
      if missing:
        raise UserError(
            f"Fashion-MNIST files {', '.join(missing)} are missing from {data.manual_dir}: "
            "run `sudo apt-get install dataset-fashion-mnist` (or `make setup`), or point "
            "--config.data.manual_dir at a folder holding the four IDX files")
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=data.manual_dir))
    return builder
  try:
    builder = tfds.builder(data.name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f"unknown tfds dataset {data.name!r}: check --config.data.name") from None
  if not builder.is_prepared():
    raise UserError(
        f"dataset {data.name!r} is not prepared in {builder.data_dir}: build it with "
        f"`tfds build {data.name} --data_dir={data_dir or '~/tensorflow_datasets'}"
        f"{' --manual_dir=DIR' if data.manual_dir else ''}` or fix --config.data.data_dir")
  return builder


def dataset_info(builder: tfds.core.DatasetBuilder, data: ml_collections.ConfigDict) -> DatasetInfo:
  info = builder.info
  return DatasetInfo(
      num_classes=info.features[data.label_key].num_classes,
      image_shape=tuple(info.features[data.image_key].shape),
      num_train_examples=info.splits[data.train_split].num_examples,
      num_eval_examples=info.splits[data.eval_split].num_examples,
  )


def _read(builder, split: str, data: ml_collections.ConfigDict) -> tf.data.Dataset:
  """The split's records in their stored order, images left encoded for the ops to decode."""
  ds = builder.as_dataset(
      split=split, shuffle_files=False, decoders={data.image_key: tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(try_autocache=False))
  ds = ds.map(lambda ex: {"image": ex[data.image_key], "label": tf.cast(ex[data.label_key], tf.int32)})
  return ds.cache() if data.cache_raw else ds


def _options(data) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = data.threads
  return options


def _host_split(split: str, process_index: int, process_count: int, drop_remainder: bool) -> str:
  return tfds.even_splits(split, n=process_count, drop_remainder=drop_remainder)[process_index]


def train_batches(builder, data: ml_collections.ConfigDict, *, local_batch_size: int, seed: int,
                  start_step: int, process_index: int, process_count: int) -> Iterator[dict]:
  """Endless local training batches {'image', 'label'} as numpy arrays, from `start_step`."""
  split = _host_split(data.train_split, process_index, process_count, drop_remainder=True)
  examples_per_epoch = builder.info.splits[split].num_examples
  steps_per_epoch = examples_per_epoch // local_batch_size
  if steps_per_epoch == 0:
    raise UserError(f"the per-process batch of {local_batch_size} is larger than the {examples_per_epoch} "
                    f"training examples each process reads: lower --config.batch_size")
  start_epoch, step_in_epoch = divmod(start_step, steps_per_epoch)
  records = _read(builder, split, data)
  preprocess = ops.parse(data.pp_train)
  buffer = min(data.shuffle_buffer, examples_per_epoch)

  def epoch_examples(epoch):
    epoch_seed = tf.random.experimental.stateless_fold_in(tf.constant([seed, process_index], tf.int64), epoch)
    # Draw the whole epoch's worth of batches and drop the remainder here, so that every epoch
    # starts a fresh batch and the step fixes the epoch and the position in it.
    shuffled = records.shuffle(buffer, seed=epoch_seed[0], reshuffle_each_iteration=False)
    shuffled = shuffled.take(steps_per_epoch * local_batch_size).enumerate()
    return shuffled.map(lambda position, ex: (tf.random.experimental.stateless_fold_in(epoch_seed, position), ex))

  ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch_examples)
  ds = ds.skip(step_in_epoch * local_batch_size)
  ds = ds.map(lambda example_seed, ex: preprocess(ex, example_seed), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch_size, drop_remainder=True).prefetch(data.host_prefetch)
  return ds.with_options(_options(data)).as_numpy_iterator()


def eval_batch_count(builder, data: ml_collections.ConfigDict, *, local_batch_size: int, process_count: int) -> int:
  """How many batches every process runs so that all of them cover their share of the split."""
  largest = max(builder.info.splits[_host_split(data.eval_split, i, process_count, False)].num_examples
                for i in range(process_count))
  return math.ceil(largest / local_batch_size)


def eval_batches(builder, data: ml_collections.ConfigDict, *, local_batch_size: int, process_index: int,
                 process_count: int) -> Iterator[dict]:
  """Local eval batches {'image', 'label', 'mask'}; padding examples have mask 0."""
  split = _host_split(data.eval_split, process_index, process_count, drop_remainder=False)
  num_batches = eval_batch_count(builder, data, local_batch_size=local_batch_size, process_count=process_count)
  preprocess = ops.parse(data.pp_eval)
  zero_seed = tf.zeros([2], tf.int64)
  ds = _read(builder, split, data).map(lambda ex: {**preprocess(ex, zero_seed), "mask": tf.constant(True)},
                                       num_parallel_calls=tf.data.AUTOTUNE)
  # Padding copies the first example's shapes (decoded shapes are not static) with mask 0.
  padding = ds.take(1).map(lambda ex: tf.nest.map_structure(tf.zeros_like, ex)).repeat()
  ds = ds.concatenate(padding).take(num_batches * local_batch_size)
  ds = ds.batch(local_batch_size).prefetch(data.host_prefetch)
  return ds.with_options(_options(data)).as_numpy_iterator()
