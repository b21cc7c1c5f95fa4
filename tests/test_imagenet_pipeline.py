"""The ImageNet path end to end: fake ILSVRC2012 tarballs -> tfds's builder -> per-host batches.

Two hosts are simulated by process indices 0 and 1 of 2: each reads its own part of each split,
and together they see every example exactly once.
"""

import collections
import itertools
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from imagenet_train.config import recipes
from imagenet_train.data import fake_imagenet as fake
from imagenet_train.data import pipeline, prepare
from imagenet_train.errors import UserError

from conftest import NUM_FAKE_TRAIN_PER_CLASS, NUM_FAKE_VAL, imagenet_config
from test_bad_input import assert_user_error, run_cli

NUM_TRAIN = 4 * NUM_FAKE_TRAIN_PER_CLASS
FINGERPRINT = "decode|resize(8)"  # deterministic: an example's pixels identify it


def fingerprints(batch, use_mask=False):
  keep = batch["mask"] if use_mask else np.ones(len(batch["label"]), bool)
  return [
    image.tobytes() + int(label).to_bytes(2, "little")
    for image, label in zip(batch["image"][keep], batch["label"][keep])
  ]


def whole_split(data_dir, split):
  builder = tfds.builder("imagenet2012", data_dir=data_dir)
  parse = pipeline.ops.parse(FINGERPRINT)
  records = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
  zero_seed = tf.zeros([2], tf.int64)
  return collections.Counter(
    fp for ex in records for fp in fingerprints({k: v[None].numpy() for k, v in parse(ex, zero_seed).items()})
  )


def train_stream(data, *, batch=4, start_step=0, process_index=0, process_count=1, seed=0):
  builder = pipeline.open_builder(data)
  return pipeline.train_batches(
    builder,
    data,
    local_batch_size=batch,
    seed=seed,
    start_step=start_step,
    process_index=process_index,
    process_count=process_count,
  )


def test_prepared_images_decode_to_their_rgb_pixels(fake_imagenet):
  """The CMYK JPEG and the PNG named .JPEG come out as 3-channel images of their own pixels."""
  _, data_dir, written = fake_imagenet
  builder = tfds.builder("imagenet2012", data_dir=data_dir)
  assert builder.info.splits["train"].num_examples == NUM_TRAIN
  assert builder.info.splits["validation"].num_examples == NUM_FAKE_VAL
  found = {}
  for ex in tfds.as_numpy(builder.as_dataset(split="train")):
    name = ex["file_name"].decode()
    assert builder.info.features["label"].int2str(ex["label"]) == written[name]["wnid"]
    found[name] = ex["image"]
  for name in (fake.CMYK_FILE, fake.PNG_FILE):
    image, source = found[name], written[name]["pixels"]
    assert image.shape == source.shape and image.dtype == np.uint8
    # JPEG loss on grainy content is a few levels; a colour-space mix-up would be tens.
    assert np.abs(image.astype(int) - source).mean() < 12, name


def test_prepare_command_builds_and_reports_each_split(tmp_path):
  manual_dir = str(tmp_path / "manual")
  fake.write_tarballs(manual_dir, train_per_class=2, num_val=5)
  args = ("prepare", "--dataset=imagenet2012", f"--manual_dir={manual_dir}", f"--data_dir={tmp_path / 'tfds'}")
  returncode, _, stderr = run_cli(*args)
  assert returncode == 0, stderr[-2000:]
  again = run_cli(*args)
  assert again[0] == 0
  builder = tfds.builder("imagenet2012", data_dir=str(tmp_path / "tfds"))
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"train": 8, "validation": 5}


def test_corrupt_jpeg_stops_prepare_naming_it_or_is_skipped_and_counted(tmp_path):
  manual_dir, data_dir = str(tmp_path / "manual"), str(tmp_path / "tfds")
  fake.write_tarballs(manual_dir, train_per_class=2, num_val=3, truncate="n02119789_2.JPEG")
  args = ("prepare", "--dataset=imagenet2012", f"--manual_dir={manual_dir}", f"--data_dir={data_dir}")
  assert_user_error(*run_cli(*args), "corrupt image n02119789_2.JPEG", "--skip_corrupt")
  assert not tfds.builder("imagenet2012", data_dir=data_dir).is_prepared()  # nothing half-written is kept
  report = prepare.prepare("imagenet2012", data_dir=data_dir, manual_dir=manual_dir, skip_corrupt=True)
  assert report.skipped == ["n02119789_2.JPEG"]
  assert report.examples["train"] == 7


def test_missing_or_misnamed_tarballs_are_named_with_the_folder(tmp_path):
  manual_dir = str(tmp_path / "manual")
  fake.write_tarballs(manual_dir, train_per_class=1, num_val=1)
  os.rename(os.path.join(manual_dir, prepare.IMAGENET_VAL_TAR), os.path.join(manual_dir, "ILSVRC2012_img_val (1).tar"))
  assert_user_error(
    *run_cli("prepare", "--dataset=imagenet2012", f"--manual_dir={manual_dir}", f"--data_dir={tmp_path / 'tfds'}"),
    f"missing {prepare.IMAGENET_VAL_TAR}",
    manual_dir,
    "ILSVRC2012_img_val (1).tar",
  )


def test_unprepared_data_dir_prints_the_prepare_command(tmp_path):
  assert_user_error(
    *run_cli(
      "train",
      "--config=configs/default.py",
      f"--workdir={tmp_path / 'w'}",
      "--config.data.name=imagenet2012",
      f"--config.data.data_dir={tmp_path}",
    ),
    f"python -m imagenet_train prepare --dataset=imagenet2012 --data_dir={tmp_path}",
  )


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_hosts_together_see_every_validation_image_once(fake_imagenet, process_count):
  data = imagenet_config(fake_imagenet[1], FINGERPRINT, FINGERPRINT)
  builder = pipeline.open_builder(data)
  together = collections.Counter()
  for process_index in range(process_count):
    batches = list(
      pipeline.eval_batches(builder, data, local_batch_size=4, process_index=process_index, process_count=process_count)
    )
    assert len(batches) == pipeline.eval_batch_count(builder, data, local_batch_size=4, process_count=process_count)
    together.update(fp for batch in batches for fp in fingerprints(batch, use_mask=True))
  assert together == whole_split(fake_imagenet[1], "validation")


def test_train_hosts_split_each_epoch_between_them(fake_imagenet):
  data = imagenet_config(fake_imagenet[1], FINGERPRINT)
  steps_per_epoch = NUM_TRAIN // 2 // 4
  hosts = [
    list(itertools.islice(train_stream(data, process_index=i, process_count=2), 2 * steps_per_epoch)) for i in range(2)
  ]
  epochs = [
    [
      collections.Counter(
        fp for batch in host[e * steps_per_epoch : (e + 1) * steps_per_epoch] for fp in fingerprints(batch)
      )
      for host in hosts
    ]
    for e in range(2)
  ]
  everything = whole_split(fake_imagenet[1], "train")
  for first, second in epochs:
    assert not first & second  # disjoint
    assert first + second == everything
  order = [
    [fp for batch in hosts[0][e * steps_per_epoch : (e + 1) * steps_per_epoch] for fp in fingerprints(batch)]
    for e in range(2)
  ]
  assert order[0] != order[1] and sorted(order[0]) == sorted(order[1])  # each epoch reshuffled


RANDOM_PP = "decode_and_inception_crop(16)|flip_lr|color_jitter(0.4, 0.4, 0.4)|normalize"


def test_stream_is_a_function_of_seed_and_step_only(fake_imagenet):
  """Thread counts and prefetch depths change nothing; a resumed stream continues exactly."""
  data = imagenet_config(fake_imagenet[1], RANDOM_PP)
  steps = 3 * NUM_TRAIN // 4  # three epochs
  reference = list(itertools.islice(train_stream(data), steps))
  data.threads, data.host_prefetch = 1, 1
  assert all(
    np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
    for a, b in zip(reference, itertools.islice(train_stream(data), steps))
  )
  data.threads, data.host_prefetch = 0, 8
  for start in (3, NUM_TRAIN // 4 + 2):  # mid-epoch, and in the second epoch
    resumed = list(itertools.islice(train_stream(data, start_step=start), steps - start))
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(reference[start:], resumed))
  other_seed = next(train_stream(data, seed=1))
  assert not np.array_equal(other_seed["image"], reference[0]["image"])
  assert reference[0]["image"].shape == (4, 16, 16, 3)


def test_crop_larger_than_the_image_is_one_line(fake_imagenet):
  data = imagenet_config(fake_imagenet[1], "decode|random_crop(100)")
  with pytest.raises(UserError, match="crop"):
    next(train_stream(data))
  data.pp_train = "decode|resize_small(24)|center_crop(32)"
  with pytest.raises(UserError, match="center_crop"):
    pipeline.dataset_info(pipeline.open_builder(data), data)


def test_train_and_evaluate_on_fake_imagenet_through_the_cli(fake_imagenet, tmp_path):
  manual_dir, data_dir, _ = fake_imagenet
  normalize = "normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))"
  returncode, _, stderr = run_cli(
    "train",
    "--config=configs/default.py",
    f"--workdir={tmp_path / 'w'}",
    "--config.data.name=imagenet2012",
    f"--config.data.data_dir={data_dir}",
    f"--config.data.manual_dir={manual_dir}",
    "--config.data.train_split=train",
    "--config.data.eval_split=validation",
    f"--config.data.pp_train=decode_and_inception_crop(32)|flip_lr|{normalize}",
    f"--config.data.pp_eval=decode(3)|resize_small(36)|center_crop(32)|{normalize}",
    "--config.batch_size=8",
    "--config.eval_batch_size=8",
    "--config.num_train_steps=2",
    devices=2,
  )
  assert returncode == 0, stderr[-3000:]
  summary = (tmp_path / "w" / "summary.json").read_text()
  assert '"steps": 2' in summary


def test_final_normalize_on_the_device_equals_it_on_the_host(fake_imagenet):
  from imagenet_train import step as step_lib

  spec = f"decode_and_inception_crop(16)|flip_lr|{recipes.IMAGENET_NORMALIZE}"
  data = imagenet_config(fake_imagenet[1], spec, f"decode(3)|resize(16)|{recipes.IMAGENET_NORMALIZE}")
  builder = pipeline.open_builder(data)
  info = pipeline.dataset_info(builder, data)
  assert info.device_normalize == (recipes.IMAGENET_MEAN, recipes.IMAGENET_STD)
  on_device = next(train_stream(data))
  data.normalize_on_device = False
  assert pipeline.dataset_info(builder, data).device_normalize is None
  on_host = next(train_stream(data))
  assert on_device["image"].dtype == np.uint8 and on_host["image"].dtype == np.float32
  np.testing.assert_allclose(
    step_lib.model_input(on_device["image"], np.float32, info.device_normalize), on_host["image"], rtol=1e-5, atol=1e-5
  )
  data.normalize_on_device = True
  data.pp_eval = "decode(3)|resize(16)|normalize(mean=0.5, std=0.25)"  # differs from training's: stays on the host
  assert pipeline.dataset_info(builder, data).device_normalize is None


@pytest.mark.parametrize("name", sorted(recipes.TFDS_SPLITS))
def test_documented_datasets_are_tfds_builders(name, tmp_path):
  builder = prepare.builder_for(name, str(tmp_path))
  assert not builder.is_prepared()
  assert "image" in builder.info.features and "label" in builder.info.features
