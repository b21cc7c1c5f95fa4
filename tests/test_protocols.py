"""Evaluation protocols: their views on a known image, flips, agreement on an input-blind model,
ensembles, the statistics, and the one-line refusals."""

import io
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from imagenet_train import evaluate, models, protocols, report, results, sharding, train
from imagenet_train import state as state_lib
from imagenet_train.config import recipes, schema
from imagenet_train.data import DatasetInfo
from imagenet_train.errors import UserError

from conftest import NUM_FAKE_VAL, REPO, imagenet_config, xla_flags
from test_bad_input import assert_user_error, run_cli


class _InputBlind(nn.Module):
  """Logits that ignore the image: every protocol must give softmax(bias) for every image."""

  num_classes: int
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    bias = self.param("bias", lambda key, shape: jax.random.normal(key, shape), (self.num_classes,))
    return jnp.zeros((x.shape[0], 1)) * x.mean() + bias


class _LeftMinusRight(nn.Module):
  """Two logits: the mean of the image's left half minus its right half, and its negation."""

  num_classes: int
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    half = x.shape[2] // 2
    scale = self.param("scale", nn.initializers.ones, ())
    difference = scale * (x[:, :, :half].mean(axis=(1, 2, 3)) - x[:, :, -half:].mean(axis=(1, 2, 3)))
    return jnp.stack([difference, -difference], axis=-1)


@pytest.fixture(autouse=True)
def _test_models(monkeypatch):
  """The two test models, registered only while a test of this file runs, so that the registry
  other tests walk stays the project's."""
  models.names()  # imports the families first, so that the patch is undone on top of them
  for name, module in (("input_blind_for_tests", _InputBlind), ("left_minus_right_for_tests", _LeftMinusRight)):
    monkeypatch.setitem(
      models._REGISTRY, name, lambda *, num_classes, dtype=jnp.float32, module=module: module(num_classes, dtype)
    )
    monkeypatch.setitem(models._NATIVE, name, ((224, 224, 3), 1000))


def _coordinate_image(height: int, width: int) -> np.ndarray:
  """Red encodes the row and green the column, so every crop is identified by its pixels."""
  rows, cols = np.mgrid[:height, :width]
  return np.stack([rows * 3, cols * 3, np.full_like(rows, 77)], axis=-1).astype(np.uint8)


def _preprocess(spec: str, image: np.ndarray) -> np.ndarray:
  import tensorflow as tf

  from imagenet_train.data import ops

  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  features = {"image": tf.constant(buffer.getvalue()), "label": tf.constant(0)}
  return ops.parse(spec)(features, tf.zeros([2], tf.int64))["image"].numpy()


def test_ten_crop_protocol_gives_ten_distinct_views_at_the_right_coordinates():
  config = schema.base_config()
  config.data.pp_eval = f"decode(3)|resize_small(80)|center_crop(64)|{recipes.IMAGENET_NORMALIZE}"
  config.evaluation.resize, config.evaluation.crop = 64, 48
  (spec,) = protocols.specs(config, "10crop")
  assert spec == f"decode(3)|resize_small(64)|ten_crop(48)|{recipes.IMAGENET_NORMALIZE}"
  image = _coordinate_image(64, 64)
  views = _preprocess(spec.rpartition("|")[0], image)  # without normalize: pixels stay comparable
  assert views.shape == (10, 48, 48, 3)
  expected = [image[8:56, 8:56], image[:48, :48], image[:48, 16:], image[16:, :48], image[16:, 16:]]
  for view, crop in zip(views[:5], expected, strict=True):
    np.testing.assert_array_equal(view, crop)
  for view, mirror in zip(views[5:], views[:5], strict=True):
    np.testing.assert_array_equal(view, mirror[:, ::-1])
  assert len({view.tobytes() for view in views}) == 10

  config.evaluation.square = True  # AlexNet: the central 64x64 square of a 64x96 image first
  (spec,) = protocols.specs(config, "10crop")
  wide = _coordinate_image(64, 96)
  views = _preprocess(spec.rpartition("|")[0], wide)
  np.testing.assert_array_equal(views[1], wide[:48, 16:64])


def test_every_protocol_keeps_the_decode_and_value_ops_and_counts_its_views():
  config = schema.base_config()
  config.data.pp_eval = f"decode(1)|resize_small(36)|center_crop(32)|{recipes.IMAGENET_NORMALIZE}"
  config.evaluation.resize, config.evaluation.crop = 36, 32
  config.evaluation.scales, config.evaluation.googlenet_scales = (32, 40), (32, 36)
  image = _coordinate_image(40, 56)
  counts = {"center": 1, "10crop": 10, "multicrop": 2 * 50, "144crop": 2 * 36}
  for protocol, count in counts.items():
    specs = protocols.specs(config, protocol)
    assert all(spec.startswith("decode(1)|") and spec.endswith(recipes.IMAGENET_NORMALIZE) for spec in specs)
    views = _preprocess(specs[0], image)
    assert (views.shape[0] if views.ndim == 4 else 1) == count, protocol
  dense = protocols.specs(config, "dense")
  # The longer sides, 44.8 and 56, go to the nearest multiple of 32; the
  # 3-channel normalize broadcasts the grey image to 3 channels.
  assert [_preprocess(spec, image).shape for spec in dense] == [(32, 32, 3), (40, 64, 3)]


def test_flips_are_flips():
  """The dense protocol averages each image with its mirror: an image and its mirror then score
  alike, where without the flip a left-right asymmetric model tells them apart."""
  mesh = sharding.create_mesh(jax.devices()[:1])
  config = schema.base_config()
  config.model, config.dtype = "left_minus_right_for_tests", "float32"
  setup = state_lib.build(config, mesh, DatasetInfo(2, (8, 8, 1), 1024, 16))
  variables = {"params": {"scale": jnp.ones(())}, "batch_stats": {}}
  image = np.zeros((1, 1, 8, 8, 1), np.float32)
  image[..., :4, :] = 1.0  # bright left half
  mirrored = image[:, :, :, ::-1]
  plain = evaluate._probabilities_fn(setup, mesh, flip=False)
  flipped = evaluate._probabilities_fn(setup, mesh, flip=True)
  assert not np.allclose(plain(variables, image), plain(variables, mirrored))
  np.testing.assert_allclose(plain(variables, mirrored), plain(variables, image)[:, ::-1], rtol=1e-6)
  np.testing.assert_allclose(flipped(variables, image), flipped(variables, mirrored), rtol=1e-6)
  np.testing.assert_allclose(flipped(variables, image), [[0.5, 0.5]], rtol=1e-6)


def _fake_imagenet_setup(fake_imagenet, model: str, **evaluation):
  config = schema.base_config()
  config.model, config.dtype = model, "float32"
  config.data = imagenet_config(
    fake_imagenet[1],
    "decode(3)|inception_crop(32)",
    f"decode(3)|resize_small(36)|center_crop(32)|{recipes.IMAGENET_NORMALIZE}",
  )
  config.batch_size, config.eval_batch_size = 8, 64
  config.evaluation.update(
    dict(resize=36, crop=32, scales=(32, 40), googlenet_scales=(32, 36), multiple=8, **evaluation)
  )
  return state_lib.prepare(config)


def test_all_protocols_agree_on_an_input_blind_model(fake_imagenet):
  setup = _fake_imagenet_setup(fake_imagenet, "input_blind_for_tests")
  state = setup.initial_state()
  expected = np.asarray(jax.nn.softmax(state.params["bias"]))
  statistics = {}
  for protocol in protocols.names():
    scores = evaluate.Scorer(setup, protocol).score(state)
    assert scores.probabilities.shape == (NUM_FAKE_VAL, 1000), protocol
    np.testing.assert_allclose(
      scores.probabilities,
      np.broadcast_to(expected, scores.probabilities.shape),
      rtol=1e-5,
      atol=1e-7,
      err_msg=protocol,
    )
    statistics[protocol] = results.statistics(scores.probabilities, scores.labels)
    assert scores.views == {"center": 1, "10crop": 10, "multicrop": 100, "144crop": 72, "dense": 4}[protocol]
  reference = statistics["center"]
  for protocol, stats in statistics.items():
    for key in ("top1_error", "top5_error", "log_loss"):
      assert getattr(stats, key) == pytest.approx(getattr(reference, key), rel=1e-5), (protocol, key)
  assert reference.num_examples == NUM_FAKE_VAL


def test_statistics_and_confusion_matrix_by_hand(tmp_path):
  probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]])
  labels = np.array([0, 1, 1, 2])
  scores = evaluate.Scores(probabilities, labels, 1)
  stats = results.statistics(probabilities, labels)
  assert stats.top1_error == pytest.approx(25.0)  # example 1 predicts class 2
  assert stats.top5_error == pytest.approx(0.0)
  assert stats.log_loss == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.5, 0.4])))
  assert stats.per_class_accuracy == [1.0, 0.5, 1.0]
  # Target distributions (the onehot op's) count their most probable class as the label.
  assert results.statistics(probabilities, np.eye(3)[labels] * 0.9 + 0.1 / 3) == stats
  matrix = evaluate.confusion_matrix(scores)
  np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
  path = tmp_path / "confusion.png"
  evaluate.write_confusion_png(matrix, str(path), "test", ["a", "b", "c"])
  with Image.open(path) as image:
    assert image.format == "PNG" and image.size[0] > 100


def test_dense_refuses_a_model_whose_head_reads_a_fixed_size_map():
  config = schema.base_config()
  config.model, config.dtype = "lenet5", "float32"
  setup = state_lib.build(config, sharding.create_mesh(jax.devices()[:1]), DatasetInfo(10, (32, 32, 1), 1024, 16))
  with pytest.raises(UserError, match="cannot run dense evaluation.*fixed-size map.*--protocol=center"):
    evaluate._check_any_size(setup)
  with pytest.raises(UserError, match="unknown protocol 'five_crop'"):
    protocols.specs(config, "five_crop")


def _train_lenet(workdir, data_config, steps=1):
  config = schema.base_config()
  config.model, config.dtype = "lenet5", "float32"
  config.data = data_config
  config.batch_size = config.eval_batch_size = 8
  config.num_train_steps, config.async_checkpoints = steps, False
  train.train_and_evaluate(config, str(workdir))
  return config


def test_ensembles_average_members_and_refuse_different_class_counts(fake_imagenet, config, tmp_path):
  imagenet = imagenet_config(fake_imagenet[1], "decode(1)|inception_crop(32)", "decode(1)|resize(32)")
  first = _train_lenet(tmp_path / "a", imagenet)
  _train_lenet(
    tmp_path / "b", imagenet_config(fake_imagenet[1], "decode(1)|inception_crop(32)", "decode(1)|resize(32)"), steps=2
  )
  members = [str(tmp_path / "a"), str(tmp_path / "b")]
  ensemble = evaluate.evaluate_ensemble(first, members, str(tmp_path / "ensemble"), "latest", "center")
  probabilities = []
  for workdir in members:
    setup, state, _ = evaluate.restore_for_evaluation(evaluate.member_config(workdir, first), workdir)
    probabilities.append(evaluate.Scorer(setup, "center").score(state).probabilities)
  labels = evaluate.Scorer(setup, "center").score(state).labels
  expected = results.statistics(np.mean(probabilities, axis=0), labels)
  (written,) = results.latest(tmp_path / "ensemble")
  assert written == ensemble and written.protocol == "ensemble" and written.member_protocol == "center"
  assert written.parameters["raw"].log_loss == pytest.approx(expected.log_loss, rel=1e-6)
  assert written.parameters["raw"].top1_error == pytest.approx(expected.top1_error)
  assert [member.step for member in ensemble.members] == [1, 2]
  assert (tmp_path / "ensemble" / "confusion_ensemble_center.png").stat().st_size > 0

  _train_lenet(tmp_path / "fmnist", config.data)  # Fashion-MNIST: 10 classes, not 1000
  with pytest.raises(UserError, match=r"different numbers of classes: .* has 1000, .*fmnist has 10"):
    evaluate.evaluate_ensemble(
      first, [str(tmp_path / "a"), str(tmp_path / "fmnist")], str(tmp_path / "bad"), "latest", "center"
    )


def test_evaluate_protocol_writes_results_and_bad_protocols_are_one_line(fake_imagenet, tmp_path):
  args = [
    "--config=configs/default.py",
    f"--workdir={tmp_path}",
    "--config.data.name=imagenet2012",
    f"--config.data.data_dir={fake_imagenet[1]}",
    "--config.data.train_split=train",
    "--config.data.eval_split=validation",
    "--config.data.pp_train=decode(1)|inception_crop(32)",
    "--config.data.pp_eval=decode(1)|resize_small(36)|center_crop(32)",
    "--config.batch_size=8",
    "--config.eval_batch_size=8",
    "--config.num_train_steps=1",
    "--config.averaging.ema_decay=0.9",
    "--config.evaluation.resize=36",
    "--config.evaluation.crop=32",
  ]
  returncode, _, stderr = run_cli("train", *args)
  assert returncode == 0, stderr[-3000:]
  returncode, _, stderr = run_cli("evaluate", *args, "--protocol=10crop")
  assert returncode == 0, stderr[-3000:]
  written = results.read(tmp_path / "eval_10crop_step_1.json")
  assert written.views == 10 and written.parameters["raw"].num_examples == NUM_FAKE_VAL
  assert set(written.parameters) == {"raw", "ema"}
  assert len(written.parameters["raw"].per_class_accuracy) == 1000
  assert (tmp_path / written.confusion_png["raw"]).stat().st_size > 0

  assert_user_error(*run_cli("evaluate", *args, "--protocol=12crop"), "unknown protocol '12crop'", "10crop")
  assert_user_error(*run_cli("evaluate", *args, "--protocol=dense"), "cannot run dense evaluation", "lenet5")
  assert_user_error(
    *run_cli("evaluate", *args, "--protocol=10crop", "--config.evaluation.crop=16"),
    "cannot score the 16x16 views of the 10crop protocol",
    "--config.evaluation.crop",
  )


# A protocol registered from the test, at 28 pixels: here, and in the CLI's process below.
_THROWAWAY = "resized_for_tests"
_REGISTER_THROWAWAY = f"protocols.protocol({_THROWAWAY!r})(lambda evaluation: ['resize(28)'])"


@pytest.fixture
def throwaway_protocol():
  exec(_REGISTER_THROWAWAY, {"protocols": protocols})
  yield _THROWAWAY
  del protocols._PROTOCOLS[_THROWAWAY]  # the registry the other tests see is the project's again


def test_a_protocol_registered_anywhere_reaches_the_cli_the_results_and_the_report(
  throwaway_protocol, fake_imagenet, tmp_path
):
  config = _train_lenet(
    tmp_path, imagenet_config(fake_imagenet[1], "decode(1)|inception_crop(32)", "decode(1)|resize(32)")
  )
  assert throwaway_protocol in protocols.names()
  assert protocols.specs(config, throwaway_protocol) == ["decode(1)|resize(28)"]
  (tmp_path / "config.json").write_text(
    json.dumps({**json.loads((tmp_path / "config.json").read_text()), "evaluation": {"protocol": throwaway_protocol}})
  )
  cli = f"import sys; from imagenet_train import protocols, __main__; {_REGISTER_THROWAWAY}; __main__.run()"
  args = [
    "evaluate",
    "--config=configs/default.py",
    f"--workdir={tmp_path}",
    f"--protocol={throwaway_protocol}",
    "--config.model=lenet5",
    "--config.dtype=float32",
    "--config.data.name=imagenet2012",
    f"--config.data.data_dir={fake_imagenet[1]}",
    "--config.data.train_split=train",
    "--config.data.eval_split=validation",
    "--config.data.pp_train=decode(1)|inception_crop(32)",
    "--config.data.pp_eval=decode(1)|resize(32)",
    "--config.batch_size=8",
    "--config.eval_batch_size=8",
  ]
  result = subprocess.run(
    [sys.executable, "-c", cli, *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    env={**os.environ, "XLA_FLAGS": xla_flags()},
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"under the {throwaway_protocol} protocol (1 views per image)" in result.stdout
  written = results.read(tmp_path / f"eval_{throwaway_protocol}_step_1.json")
  assert written.protocol == throwaway_protocol and written.parameters["raw"].num_examples == NUM_FAKE_VAL
  rows = report.comparison_rows(report.collect([str(tmp_path)]))
  assert [(row["protocol"], row["top1"]) for row in rows] == [
    (throwaway_protocol, written.parameters["raw"].top1_error)
  ]
