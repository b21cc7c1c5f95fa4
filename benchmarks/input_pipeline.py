"""Images/s of the input pipelines at 224x224, beside a minimal tf.data baseline, in one run.

    python benchmarks/input_pipeline.py [--images=1500] [--batch=128] [--seconds=15] [--dir=/tmp/input_bench]

The dataset is generated on first use: fake ILSVRC2012 tarballs of photo-like JPEGs of 300-400
by 350-500 pixels (ImageNet's typical size), prepared by tfds's own imagenet2012 builder into
--dir and reused by later runs. Every pipeline reads the same prepared records.

- baseline train: the least a training pipeline can do: a random window from
  sample_distorted_bounding_box decoded by decode_and_crop_jpeg, resized to 224, flipped,
  batched; uint8 out, tf.data's defaults otherwise.
- project train: `train_batches` with the ResNet recipe (RESNET_PP_TRAIN: fused Inception crop,
  flip; the final normalisation runs on the device), deterministic, per-example seeds, resumable;
  again with `cache_raw`, the encoded records kept in memory.
- baseline eval / project eval: resize the shorter side to 256 and crop the central 224, one pass
  over the validation split after another; the project's with antialiasing (RESNET_PP_EVAL),
  padding and masks; again without antialiasing, the baseline's resampling; and with
  `cache_eval`, after one pass.

Each pipeline is built afresh and timed --trials times, alternating with the others so that all
of them see the same machine load; the table gives the median images/s. The ratio column is against the
baseline of the same kind.
"""

import gc
import itertools
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from absl import app, flags  # noqa: E402

from imagenet_train.config import recipes  # noqa: E402
from imagenet_train.data import fake_imagenet, pipeline, prepare  # noqa: E402

_IMAGES = flags.DEFINE_integer("images", 1500, "Training images to generate (validation: a third as many).")
_BATCH = flags.DEFINE_integer("batch", 128, "Batch size of every pipeline.")
_SECONDS = flags.DEFINE_float("seconds", 15.0, "Seconds timed per trial, after one warm-up batch.")
_TRIALS = flags.DEFINE_integer("trials", 3, "Trials per pipeline; the table shows the median.")
_DIR = flags.DEFINE_string("dir", "/tmp/input_pipeline_bench", "Where the generated dataset is kept.")

_SIZE = 224
# tfds would quietly cache this small dataset in memory, which it never does for ImageNet's 140 GB:
# every pipeline reads the files, as on ImageNet, unless its caching option says otherwise.
_FROM_FILES = tfds.ReadConfig(try_autocache=False)


def prepared_builder(directory: str, images: int):
  data_dir = os.path.join(directory, f"tfds_{images}")
  builder = tfds.builder("imagenet2012", data_dir=data_dir)
  if not builder.is_prepared():
    manual_dir = os.path.join(directory, f"manual_{images}")
    classes = 10
    fake_imagenet.write_tarballs(
      manual_dir,
      wnids=fake_imagenet.imagenet_wnids()[:classes],
      train_per_class=images // classes,
      num_val=images // 3,
      size=((300, 400), (350, 500)),
      cmyk_and_png=False,
    )
    prepare.prepare("imagenet2012", data_dir=data_dir, manual_dir=manual_dir)
    builder = tfds.builder("imagenet2012", data_dir=data_dir)
  return builder


def baseline_train(builder, batch: int):
  def crop_flip(example):
    encoded = example["image"]
    begin, size, _ = tf.image.sample_distorted_bounding_box(
      tf.image.extract_jpeg_shape(encoded),
      tf.zeros([0, 0, 4]),
      min_object_covered=0.0,
      aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.08, 1.0),
      max_attempts=10,
      use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
    image = tf.cast(tf.image.resize(image, [_SIZE, _SIZE]), tf.uint8)
    return {"image": tf.image.random_flip_left_right(image), "label": example["label"]}

  ds = builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()}, read_config=_FROM_FILES)
  ds = ds.repeat().shuffle(1024).map(crop_flip, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


def baseline_eval(builder, batch: int):
  def center(example):
    image = tf.io.decode_jpeg(example["image"], channels=3)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scaled = tf.cast(tf.round(shape * 256.0 / tf.reduce_min(shape)), tf.int32)
    image = tf.image.resize(image, scaled)
    top, left = (scaled[0] - _SIZE) // 2, (scaled[1] - _SIZE) // 2
    return {"image": tf.cast(image[top : top + _SIZE, left : left + _SIZE], tf.uint8), "label": example["label"]}

  ds = builder.as_dataset(split="validation", decoders={"image": tfds.decode.SkipDecoding()}, read_config=_FROM_FILES)
  ds = ds.map(center, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE)
  return itertools.chain.from_iterable(ds.as_numpy_iterator() for _ in itertools.count())


def project_data(builder_dir: str, **fields):
  data = recipes.imagenet_data()
  data.data_dir = builder_dir
  data.update(fields)
  return data


def project_train(data, batch: int):
  builder = pipeline.open_builder(data)
  return pipeline.train_batches(
    builder, data, local_batch_size=batch, seed=0, start_step=0, process_index=0, process_count=1
  )


def project_eval(data, batch: int):
  """Endless eval batches: one evaluation pass after another, as training runs them."""
  builder = pipeline.open_builder(data)
  return itertools.chain.from_iterable(
    pipeline.eval_batches(builder, data, local_batch_size=batch, process_index=0, process_count=1)
    for _ in itertools.count()
  )


def images_per_second(make_batches, seconds: float) -> float:
  """Builds a fresh pipeline, warms it up for two batches, then counts images for `seconds`.

  Fresh each time, and dropped afterwards, so that no idle pipeline's threads compete with the one timed.
  """
  batches = make_batches()
  for _ in range(2):
    next(batches)
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    count += len(next(batches)["label"])
  rate = count / (time.perf_counter() - start)
  del batches
  gc.collect()
  return rate


def main(argv):
  del argv
  builder = prepared_builder(_DIR.value, _IMAGES.value)
  data_dir = os.path.dirname(os.path.dirname(str(builder.data_dir)))
  batch = _BATCH.value
  cached = project_data(data_dir, cache_eval=True)
  plain_resize = project_data(data_dir, pp_eval=recipes.RESNET_PP_EVAL.replace("(256)", "(256, antialias=False)"))
  pipelines = {
    "baseline train": ("train", lambda: baseline_train(builder, batch)),
    "project train (ResNet recipe)": ("train", lambda: project_train(project_data(data_dir), batch)),
    "project train, cache_raw": ("train", lambda: project_train(project_data(data_dir, cache_raw=True), batch)),
    "baseline eval": ("eval", lambda: baseline_eval(builder, batch)),
    "project eval (ResNet recipe)": ("eval", lambda: project_eval(project_data(data_dir), batch)),
    "project eval, antialias=False": ("eval", lambda: project_eval(plain_resize, batch)),
    "project eval, cache_eval": ("eval", lambda: project_eval(cached, batch)),
  }
  results = {name: [] for name in pipelines}
  for _ in range(_TRIALS.value):
    for name, (_, make) in pipelines.items():
      results[name].append(images_per_second(make, _SECONDS.value))
  print(
    f"{builder.info.splits['train'].num_examples} training and {builder.info.splits['validation'].num_examples} "
    f"validation JPEGs, batch {batch}, {os.cpu_count()} CPU cores, "
    f"median of {_TRIALS.value} x {_SECONDS.value:g} s"
  )
  print(f"{'pipeline':32s} {'images/s':>10s} {'vs baseline':>12s}")
  medians = {name: statistics.median(values) for name, values in results.items()}
  for name, (kind, _) in pipelines.items():
    print(f"{name:32s} {medians[name]:10.1f} {medians[name] / medians[f'baseline {kind}']:11.0%}")


if __name__ == "__main__":
  app.run(main)
