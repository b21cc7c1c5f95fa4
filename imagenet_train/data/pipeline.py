"""Per-host tf.data pipelines over tfds datasets, reproducible and resumable to the batch.

Training: each process reads its own even part of the train split. Epoch `e` on process `h` is
a shuffle of that part seeded by (seed, h, e); each example's augmentation is seeded by
(seed, h, e, position in the epoch). The stream is therefore a pure function of the seed and the step, and a run resumed
at step k skips exactly the k * batch examples an uninterrupted run consumed before decoding
any of them.

Evaluation: each process reads its own even part of the eval split, every example exactly once,
padded with masked examples to a batch count that is the same on every process.
"""

import math
import os
from collections.abc import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from imagenet_train.data import DatasetInfo, op_error_reason, ops, prepare
from imagenet_train.errors import UserError

# Input pipelines run on the host; TensorFlow must never take accelerator memory.
tf.config.set_visible_devices([], "GPU")


def open_builder(data: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared tfds builder for `data.name`; the project's local builders prepare themselves."""
  if data.name in prepare.LOCAL_BUILDERS:
    prepare.prepare(data.name, data_dir=data.data_dir, manual_dir=data.manual_dir)
  builder = prepare.builder_for(data.name, os.path.expanduser(data.data_dir) if data.data_dir else None)
  if not builder.is_prepared():
    raise UserError(
      f"dataset {data.name!r} is not prepared in {builder.data_dir}: run `python -m imagenet_train prepare "
      f"--dataset={data.name} --data_dir={data.data_dir or '~/tensorflow_datasets'}"
      f"{f' --manual_dir={data.manual_dir}' if data.manual_dir else ''}`, or point --config.data.data_dir "
      "at the folder you prepared it in"
    )
  for role in ("eval_split", "train_split"):
    if data[role]:
      _check_split(builder, data, role)
  features = builder.info.features
  for role in ("image_key", "label_key"):
    if data[role] not in features:
      raise UserError(
        f"dataset {data.name!r} has no feature {data[role]!r} (--config.data.{role}): it has {', '.join(features)}"
      )
  return builder


def _check_split(builder: tfds.core.DatasetBuilder, data: ml_collections.ConfigDict, role: str) -> None:
  """Refuses a split (or slice) of `data.role` that does not parse, names no split, or selects no example."""
  split, splits = data[role], builder.info.splits
  if split.split("[")[0] not in splits:
    raise UserError(f"dataset {data.name!r} has no split {split!r} (--config.data.{role}); it has {', '.join(splits)}")
  try:
    count = splits[split].num_examples
  except (ValueError, AssertionError) as error:
    raise UserError(
      f"--config.data.{role}={split} is not a split tfds can read ({str(error).splitlines()[0]}): write e.g. "
      "train, train[:90%] or train[1000:]"
    ) from None
  if count <= 0:  # tfds counts a slice that ends before it starts as negative
    raise UserError(f"--config.data.{role}={split} selects no examples of {data.name!r}: widen the slice")


def host_specs(data: ml_collections.ConfigDict) -> tuple[str, str, tuple | None]:
  """The training and evaluation specs the host runs, and the (mean, std) left to the device.

  A final `normalize` moves to the device only when both specs end with the same one, as the
  train and eval steps apply one normalisation.
  """
  train_head, train_stats = ops.split_final_normalize(data.pp_train) if data.train_split else ("", None)
  eval_head, eval_stats = ops.split_final_normalize(data.pp_eval)
  if data.normalize_on_device and eval_stats is not None and (not data.train_split or train_stats == eval_stats):
    return train_head, eval_head, eval_stats
  return data.pp_train, data.pp_eval, None


def dataset_info(builder: tfds.core.DatasetBuilder, data: ml_collections.ConfigDict) -> DatasetInfo:
  """Class count, split sizes, and the shapes of the images the training and evaluation pipelines emit."""
  info = builder.info
  num_classes = info.features[data.label_key].num_classes
  written = {role: _parse_spec(data, role, num_classes) for role in ("pp_train", "pp_eval") if data[role]}
  pp_train, pp_eval, device_normalize = host_specs(data)
  eval_shape = _emitted_shape(builder, data, "pp_eval", pp_eval, data.eval_split)
  # Evaluation-only datasets have no train split: the model is built for the evaluation images.
  shape = _emitted_shape(builder, data, "pp_train", pp_train, data.train_split) if data.train_split else eval_shape
  channels = int(tf.TensorShape(info.features[data.image_key].shape)[-1] or shape[-1])
  for role, parsed in written.items():
    if parsed.channels not in (None, channels):
      raise UserError(
        f"--config.data.{role} gives {parsed.channels} per-channel values but {data.name!r} has {channels}-channel "
        f"images: give {channels}"
      )
  return DatasetInfo(
    num_classes=num_classes,
    image_shape=shape,
    num_train_examples=info.splits[data.train_split].num_examples if data.train_split else 0,
    num_eval_examples=info.splits[data.eval_split].num_examples,
    device_normalize=device_normalize,
    eval_image_shape=eval_shape,
  )


def _emitted_shape(builder, data: ml_collections.ConfigDict, role: str, spec: str, split: str) -> tuple[int, ...]:
  """The [height, width, channels] of the images `spec`, the host's part of `data.role`, makes of `split`'s
  examples (a multi-view evaluation spec stacks its views in front of them)."""
  preprocess = ops.parse(spec)
  first = (
    _read(builder, split, data, cache=False).take(1).map(lambda ex: preprocess(ex, tf.zeros([2], tf.int64))["image"])
  )
  shape = first.element_spec.shape
  if not shape.is_fully_defined() and tf.TensorShape(builder.info.features[data.image_key].shape).is_fully_defined():
    # Decoding forgets the size, but images of a fixed-size dataset keep theirs through
    # size-preserving ops: one example tells.
    try:
      shape = next(iter(first)).shape
    except tf.errors.InvalidArgumentError as error:  # an op's own run-time check, such as a crop too large
      raise UserError(
        f"--config.data.{role}={data[role]} fails on the first example of {split}: {op_error_reason(error.message)}"
      ) from None
  if not shape.is_fully_defined():
    raise UserError(
      f"--config.data.{role}={data[role]} leaves images of varying size ({shape}): end it with a crop or resize to "
      "a fixed size"
    )
  return tuple(shape.as_list()[-3:])


def _parse_spec(data: ml_collections.ConfigDict, role: str, num_classes: int):
  """The spec of `data.role` parsed, its mistakes named with the field; refuses a class count not the dataset's."""
  try:
    parsed = ops.parse(data[role])
  except UserError as error:
    raise UserError(f"--config.data.{role}: {error}") from None
  if parsed.classes not in (None, num_classes):
    raise UserError(
      f"--config.data.{role} encodes labels as {parsed.classes} classes but {data.name!r} has {num_classes}: "
      f"write onehot({num_classes})"
    )
  return parsed


def _numpy(ds: tf.data.Dataset, data: ml_collections.ConfigDict) -> Iterator[dict]:
  """Iterates `ds` as numpy; a preprocessing failure (a crop larger than the image) is one line."""
  iterator = ds.with_options(_options(data)).as_numpy_iterator()
  while True:
    try:
      batch = next(iterator)
    except StopIteration:
      return
    except tf.errors.InvalidArgumentError as error:
      raise UserError(
        f"preprocessing failed: {op_error_reason(error.message)}; check the preprocessing spec "
        "(--config.data.pp_train / pp_eval)"
      ) from None
    yield batch


def _read(builder, split: str, data: ml_collections.ConfigDict, cache: bool = True) -> tf.data.Dataset:
  """The split's records in their stored order, images left encoded for the ops to decode; cached in memory with
  `data.cache_raw` unless `cache` is off (a look at the first record, which would leave a cache half filled)."""
  ds = builder.as_dataset(
    split=split,
    shuffle_files=False,
    decoders={data.image_key: tfds.decode.SkipDecoding()},
    read_config=tfds.ReadConfig(try_autocache=False),
  )
  ds = ds.map(lambda ex: {"image": ex[data.image_key], "label": tf.cast(ex[data.label_key], tf.int32)})
  return ds.cache() if data.cache_raw and cache else ds


def _options(data) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = data.threads
  # One thread per element: elements run in parallel, so splitting each op across cores only adds contention.
  options.threading.max_intra_op_parallelism = 1
  return options


def _host_split(split: str, process_index: int, process_count: int, drop_remainder: bool) -> str:
  return tfds.even_splits(split, n=process_count, drop_remainder=drop_remainder)[process_index]


def train_batches(
  builder,
  data: ml_collections.ConfigDict,
  *,
  local_batch_size: int,
  seed: int,
  start_step: int,
  process_index: int,
  process_count: int,
) -> Iterator[dict]:
  """Endless local training batches {'image', 'label'} as numpy arrays, from `start_step`.

  `data.host_sharding` says how processes share the split. "split" (the default): each reads
  its own even part, shuffled and augmented under its own seeds, so the stream depends on the
  process count. "global": every process reads the whole split in one shuffled order and keeps
  its devices' block of each global batch, decoding only that: the global batches are the same
  for any process count (a run resumes on more or fewer hosts unchanged), at the cost of every
  host reading all the records.
  """
  if data.host_sharding not in ("split", "global"):
    raise UserError(f"--config.data.host_sharding={data.host_sharding!r} is neither 'split' nor 'global'")
  shared = data.host_sharding == "global"
  split = (
    data.train_split if shared else _host_split(data.train_split, process_index, process_count, drop_remainder=True)
  )
  reader = 0 if shared else process_index  # whose seeds order and augment the examples
  # Batches as one reader draws them: the global batch when all hosts share one order.
  drawn_batch = local_batch_size * (process_count if shared else 1)
  examples_per_epoch = builder.info.splits[split].num_examples
  steps_per_epoch = examples_per_epoch // drawn_batch
  if steps_per_epoch == 0:
    raise UserError(
      f"the batch of {drawn_batch} is larger than the {examples_per_epoch} training examples "
      f"{'the processes share' if shared else 'each process reads'}: lower --config.batch_size"
    )
  start_epoch, step_in_epoch = divmod(start_step, steps_per_epoch)
  records = _read(builder, split, data)
  preprocess = ops.parse(host_specs(data)[0])
  buffer = min(data.shuffle_buffer, examples_per_epoch)
  reader_seed = tf.constant([seed, reader], tf.int64)

  def epoch_examples(epoch):
    # A stateless draw, as a fold_in's first word does not depend on the epoch.
    shuffle_seed = tf.random.stateless_uniform(
      [], tf.random.experimental.stateless_fold_in(reader_seed, epoch), minval=None, maxval=None, dtype=tf.int64
    )
    shuffled = records.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=False)
    # Draw the whole epoch's worth of batches and drop the remainder here, so that every epoch
    # starts a fresh batch and the step fixes the epoch and the position in it.
    positions = tf.data.Dataset.range(steps_per_epoch * drawn_batch)
    return tf.data.Dataset.zip(tf.data.Dataset.from_tensors(epoch).repeat(), positions, shuffled)

  def augment(epoch, position, example):
    example_seed = tf.random.experimental.stateless_fold_in(
      tf.random.experimental.stateless_fold_in(reader_seed, epoch), position
    )
    return preprocess(example, example_seed)

  ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch_examples)
  ds = ds.skip(step_in_epoch * drawn_batch)
  if shared:  # this process's devices hold block `process_index` of each global batch
    ds = ds.filter(lambda epoch, position, example: position % drawn_batch // local_batch_size == process_index)
  # Records read ahead, so that decoding carries on while the next epoch's shuffle buffer fills.
  ds = ds.prefetch(2 * local_batch_size)
  ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch_size, drop_remainder=True).prefetch(data.host_prefetch)
  return _numpy(ds, data)


def eval_batch_count(builder, data: ml_collections.ConfigDict, *, local_batch_size: int, process_count: int) -> int:
  """How many batches every process runs so that all of them cover their share of the split."""
  largest = max(
    builder.info.splits[_host_split(data.eval_split, i, process_count, False)].num_examples
    for i in range(process_count)
  )
  return math.ceil(largest / local_batch_size)


def eval_batches(
  builder, data: ml_collections.ConfigDict, *, local_batch_size: int, process_index: int, process_count: int
) -> Iterator[dict]:
  """Local eval batches {'image', 'label', 'mask'}; padding examples have mask 0."""
  # Every data field, so that no change of split, spec, keys or caching can reuse a stale dataset.
  key = (
    str(builder.data_dir),
    data.to_json_best_effort(sort_keys=True),
    local_batch_size,
    process_index,
    process_count,
  )
  if key not in _EVAL_DATASETS:
    _EVAL_DATASETS[key] = _eval_dataset(builder, data, local_batch_size, process_index, process_count)
  return _numpy(_EVAL_DATASETS[key], data)


# Built once per process: each evaluation only starts a new iterator, and with data.cache_eval
# the preprocessed eval split stays in memory from one evaluation to the next.
_EVAL_DATASETS: dict[tuple, tf.data.Dataset] = {}


def _eval_dataset(builder, data, local_batch_size, process_index, process_count) -> tf.data.Dataset:
  split = _host_split(data.eval_split, process_index, process_count, drop_remainder=False)
  num_batches = eval_batch_count(builder, data, local_batch_size=local_batch_size, process_count=process_count)
  preprocess = ops.parse(host_specs(data)[1])
  zero_seed = tf.zeros([2], tf.int64)
  ds = _read(builder, split, data).map(
    lambda ex: {**preprocess(ex, zero_seed), "mask": tf.constant(True)}, num_parallel_calls=tf.data.AUTOTUNE
  )
  if data.cache_eval:
    ds = ds.cache()
  # Padding examples have mask 0, so that every process runs as many batches.
  if all(spec.shape.is_fully_defined() for spec in tf.nest.flatten(ds.element_spec)):
    padding = tf.data.Dataset.from_tensors(
      tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), ds.element_spec)
    ).repeat()
  else:  # shapes known only at run time: copy the first example's, preprocessing it once
    padding = ds.take(1).map(lambda ex: tf.nest.map_structure(tf.zeros_like, ex)).cache().repeat()
  ds = ds.concatenate(padding).take(num_batches * local_batch_size)
  return ds.batch(local_batch_size).prefetch(data.host_prefetch)


def views_per_example(builder, data: ml_collections.ConfigDict) -> int:
  """How many views the eval spec stacks per example (multi-crop protocols), 1 for a single image."""
  preprocess = ops.parse(host_specs(data)[1])
  first = (
    _read(builder, data.eval_split, data, cache=False)
    .take(1)
    .map(lambda ex: preprocess(ex, tf.zeros([2], tf.int64))["image"])
  )
  shape = first.element_spec.shape
  if shape.rank != 4:
    return 1
  return shape[0] if shape[0] is not None else next(iter(first)).shape[0]


def eval_examples(
  builder, data: ml_collections.ConfigDict, *, process_index: int, process_count: int
) -> Iterator[dict]:
  """This process's part of the eval split one example at a time, {'image', 'label', 'index'},
  images of any size (dense evaluation); `index` is the position in that part."""
  split = _host_split(data.eval_split, process_index, process_count, drop_remainder=False)
  preprocess = ops.parse(host_specs(data)[1])
  zero_seed = tf.zeros([2], tf.int64)
  ds = _read(builder, split, data).map(lambda ex: preprocess(ex, zero_seed), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.enumerate().map(lambda index, ex: {**ex, "index": index})
  return _numpy(ds.prefetch(data.host_prefetch), data)
