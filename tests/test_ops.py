"""Every preprocessing op on known synthetic images: output geometry and pixel values."""

import numpy as np
import pytest
import tensorflow as tf

from imagenet_train.data import ops
from imagenet_train.errors import UserError

SEED = tf.constant([1, 2], tf.int64)
EIGVAL = np.array([0.2175, 0.0188, 0.0045])
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def coords(height=48, width=64):
  """R is the row and G the column of each pixel, B is 7: every output pixel tells where it came from."""
  y, x = np.mgrid[:height, :width]
  return np.stack([y, x, np.full_like(y, 7)], -1).astype(np.uint8)


def quadrants(height=48, width=64):
  """Four flat colours, one per quadrant."""
  image = np.zeros((height, width, 3), np.uint8)
  image[: height // 2, : width // 2] = (200, 30, 30)
  image[: height // 2, width // 2 :] = (30, 200, 30)
  image[height // 2 :, : width // 2] = (30, 30, 200)
  image[height // 2 :, width // 2 :] = (220, 220, 40)
  return image


def png(image):
  return tf.io.encode_png(image).numpy()


def jpeg(image):
  return tf.io.encode_jpeg(image, quality=100, chroma_downsampling=False).numpy()


def run(spec, image, seed=SEED, **features):
  return ops.parse(spec)({"image": tf.constant(image), **features}, seed)


def image_of(spec, image, seed=SEED):
  return run(spec, image, seed)["image"].numpy()


def images_over_seeds(spec, image, count):
  """The op traced into a tf.data map, as the pipeline runs it, for seeds [0, 0] ... [count - 1, 0]."""
  preprocess = ops.parse(spec)
  seeds = tf.data.Dataset.range(count).map(lambda i: tf.stack([i, tf.constant(0, tf.int64)]))
  return list(seeds.map(lambda seed: preprocess({"image": tf.constant(image)}, seed)["image"]).as_numpy_iterator())


def window(view):
  """(top, left, height, width) of the coords() window that an upsampled view shows, read from its corners."""
  (top, left), (bottom, right) = view[0, 0, :2].astype(int), view[-1, -1, :2].astype(int)
  return top, left, bottom - top + 1, right - left + 1


def resized(image, size):
  return image_of(f"resize_small({size})", image) if isinstance(size, int) else image_of(f"resize({size[0]})", image)


def test_decode_reads_png_exactly_and_jpeg_closely():
  image = quadrants()
  np.testing.assert_array_equal(image_of("decode", png(image)), image)
  decoded = image_of("decode", jpeg(image))
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
  assert np.abs(decoded.astype(int) - image).max() <= 8


def test_resize_squares_and_keeps_flat_regions():
  out = image_of("resize(24)", quadrants())
  assert out.shape == (24, 24, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out[2:10, 2:10], np.broadcast_to([200, 30, 30], (8, 8, 3)))
  np.testing.assert_array_equal(out[14:22, 14:22], np.broadcast_to([220, 220, 40], (8, 8, 3)))


@pytest.mark.parametrize("shape", [(4, 5, 3), (2, 4, 5, 3)])
def test_normalize_scales_and_standardises_single_and_multi_view(shape):
  image = np.full(shape, 51, np.uint8)
  out = image_of("normalize(mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.25))", image)
  assert out.shape == shape and out.dtype == np.float32
  np.testing.assert_allclose(out[..., 0, 0, :], np.broadcast_to([0.2, 0.0, -0.4], shape[:-3] + (3,)), atol=1e-6)


def test_random_crop_takes_a_window_of_the_source():
  image = coords()
  views = images_over_seeds("random_crop(20)", image, 20)
  for view in views:
    top, left, height, width = window(view)
    assert (height, width) == (20, 20)
    np.testing.assert_array_equal(view, image[top : top + 20, left : left + 20])
  assert len({window(view) for view in views}) > 10


def test_random_crop_pads_with_zeros():
  image = coords(48, 48)
  np.testing.assert_array_equal(image_of("random_crop(56, pad=4)", image), np.pad(image, [(4, 4), (4, 4), (0, 0)]))


def test_flip_lr_flips_for_some_seeds_only():
  image = coords()
  views = images_over_seeds("flip_lr", image, 20)
  flipped = [np.array_equal(view, image[:, ::-1]) for view in views]
  assert all(f or np.array_equal(view, image) for f, view in zip(flipped, views))
  assert any(flipped) and not all(flipped)


def test_inception_crop_windows_have_area_and_aspect_in_range():
  image = coords()
  # A 64-pixel output upsamples every window of the 48x64 image, so its corner pixels are the window's corners.
  views = images_over_seeds("decode_and_inception_crop(64, area=(0.2, 0.8), aspect=(0.75, 1.3333))", png(image), 40)
  windows = {window(view) for view in views}
  assert len(windows) > 20
  for view in views:
    top, left, height, width = window(view)
    assert view.shape == (64, 64, 3) and view.dtype == np.uint8
    assert 0.2 - 0.01 <= height * width / (48 * 64) <= 0.8 + 0.01
    assert 0.75 - 0.05 <= width / height <= 4 / 3 + 0.05
    np.testing.assert_array_equal(view, image_of("resize(64)", image[top : top + height, left : left + width]))


def test_inception_crop_fused_jpeg_png_fallback_and_decoded_agree():
  decoded = image_of("decode", jpeg(coords()))
  for index in range(5):
    seed = tf.constant([index, 9], tf.int64)
    from_jpeg = image_of("decode_and_inception_crop(32)", jpeg(coords()), seed)
    from_png = image_of("decode_and_inception_crop(32)", png(decoded), seed)
    from_pixels = image_of("inception_crop(32)", decoded, seed)
    assert from_jpeg.shape == (32, 32, 3) and from_jpeg.dtype == np.uint8
    np.testing.assert_array_equal(from_png, from_pixels)
    assert np.abs(from_jpeg.astype(int) - from_png).max() <= 1


@pytest.mark.parametrize("height, width, top, left, side", [(48, 64, 3, 11, 42), (64, 48, 11, 3, 42)])
def test_decode_and_center_crop_takes_the_central_square(height, width, top, left, side):
  image = coords(height, width)
  out = image_of("decode_and_center_crop(64)", png(image))
  assert out.shape == (64, 64, 3) and out.dtype == np.uint8
  assert window(out) == (top, left, side, side)
  np.testing.assert_array_equal(out, image_of("resize(64)", image[top : top + side, left : left + side]))
  decoded = image_of("decode", jpeg(image))
  from_jpeg = image_of("decode_and_center_crop(64)", jpeg(image))
  expected = image_of("resize(64)", decoded[top : top + side, left : left + side])
  assert np.abs(from_jpeg.astype(int) - expected).max() <= 1


@pytest.mark.parametrize(
  "spec, shape, expected",
  [
    ("resize_small(24)", (48, 64), (24, 32)),
    ("resize_small(24)", (64, 48), (32, 24)),
    ("resize_small(24)", (48, 70), (24, 35)),
    ("resize_small(24, multiple=8)", (48, 70), (24, 32)),
    ("resize_small(24, multiple=8)", (70, 48), (32, 24)),
    ("resize_small(20, multiple=16)", (40, 40), (20, 20)),  # never below the shorter side
    ("resize_small(96)", (48, 64), (96, 128)),
  ],
)
def test_resize_small_sets_the_shorter_side_and_keeps_the_aspect(spec, shape, expected):
  out = image_of(spec, quadrants(*shape))
  assert out.shape == expected + (3,) and out.dtype == np.uint8
  np.testing.assert_array_equal(out[1, 1], [200, 30, 30])
  np.testing.assert_array_equal(out[-2, -2], [220, 220, 40])


def test_resize_small_keeps_float_images_float():
  out = image_of("resize_small(24)", np.full((48, 64, 3), 0.5, np.float32))
  assert out.shape == (24, 32, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_random_resize_small_draws_every_size_in_the_range():
  views = images_over_seeds("random_resize_small(20, 24)", quadrants(), 100)
  assert {view.shape[0] for view in views} == {20, 21, 22, 23, 24}
  assert all(view.shape[1] == round(view.shape[0] * 64 / 48) for view in views)


def test_center_crop_takes_the_center():
  image = coords()
  out = image_of("center_crop(20)", image)
  np.testing.assert_array_equal(out, image[14:34, 22:42])


def test_pca_lighting_shifts_every_pixel_along_the_eigenvectors():
  sigma = 0.1
  views = np.stack(images_over_seeds(f"pca_lighting({sigma})", np.full((4, 5, 3), 128, np.uint8), 2000))
  assert views.dtype == np.float32
  shifts = views - 128.0
  np.testing.assert_allclose(shifts, np.broadcast_to(shifts[:, :1, :1], shifts.shape), atol=1e-4)
  # Per image the shift is EIGVEC @ (alpha * EIGVAL) * 255, alpha ~ N(0, sigma).
  components = np.linalg.solve(EIGVEC, shifts[:, 0, 0].T).T
  np.testing.assert_allclose(components.std(0), sigma * EIGVAL * 255, rtol=0.1)
  assert np.all(np.abs(components.mean(0)) < 0.1 * sigma * EIGVAL * 255)


def test_color_jitter_brightness_scales_by_a_factor_in_range():
  image = quadrants() // 2 + 10  # at most 120, so a factor of 1.4 does not clip
  factors = []
  for view in images_over_seeds("color_jitter(brightness=0.4)", image, 50):
    assert view.dtype == np.float32
    factor = view[0, 0, 0] / image[0, 0, 0]
    np.testing.assert_allclose(view, image * factor, rtol=1e-5)
    factors.append(factor)
  assert 0.6 <= min(factors) < 0.75 and 1.25 < max(factors) <= 1.4


def test_color_jitter_contrast_blends_with_the_mean_grey():
  image = quadrants()
  view = image_of("color_jitter(contrast=0.5)", image)
  mean = (image @ np.array([0.299, 0.587, 0.114])).mean()
  factor = (view[0, 0, 0] - mean) / (image[0, 0, 0] - mean)
  assert 0.5 <= factor <= 1.5
  np.testing.assert_allclose(view, np.clip(mean + factor * (image - mean), 0, 255), atol=1e-3)


def test_color_jitter_saturation_and_hue_keep_greys_and_hue_keeps_value():
  grey = np.full((4, 4, 3), 90, np.uint8)
  np.testing.assert_allclose(image_of("color_jitter(saturation=0.8, hue=0.5)", grey), grey, atol=1e-3)
  image = quadrants()
  view = image_of("color_jitter(hue=0.5)", image)
  assert not np.allclose(view, image, atol=1)
  np.testing.assert_allclose(view.max(-1), image.max(-1), atol=1e-3)
  np.testing.assert_allclose(view.min(-1), image.min(-1), atol=1e-3)


def test_color_jitter_saturation_clips_to_the_pixel_range():
  views = images_over_seeds("color_jitter(saturation=1.0)", quadrants(), 20)
  assert all(view.min() >= 0 and view.max() <= 255 for view in views)
  assert max(view.max() for view in views) == 255


def test_color_jitter_without_distortions_is_the_identity():
  image = coords()
  out = image_of("color_jitter", image)
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, image)


def test_subtract_mean_single_and_multi_view():
  np.testing.assert_allclose(
    image_of("subtract_mean((100, 50, 10))", np.full((2, 4, 5, 3), 110, np.uint8)),
    np.broadcast_to([10, 60, 100], (2, 4, 5, 3)),
  )
  np.testing.assert_allclose(image_of("subtract_mean(100)", np.full((4, 5, 3), 90, np.uint8)), -10)


def test_subtract_mean_image_subtracts_and_resizes(tmp_path):
  image = coords()
  same = str(tmp_path / "same.npy")
  np.save(same, image.astype(np.float32) / 2)
  np.testing.assert_allclose(image_of(f"subtract_mean_image({same!r})", image), image / 2)
  smaller = str(tmp_path / "smaller.npy")
  np.save(smaller, np.broadcast_to(np.array([10.0, 20.0, 30.0]), (24, 32, 3)))
  out = image_of(f"subtract_mean_image({smaller!r})", np.full((2, 48, 64, 3), 100, np.uint8))
  assert out.shape == (2, 48, 64, 3)
  np.testing.assert_allclose(out, np.broadcast_to([90, 80, 70], out.shape), atol=1e-4)


def test_subtract_mean_image_rejects_missing_and_pickled_files(tmp_path):
  missing = str(tmp_path / "missing.npy")
  with pytest.raises(UserError, match="missing.npy"):
    ops.parse(f"subtract_mean_image({missing!r})")
  pickled = str(tmp_path / "pickled.npy")
  np.save(pickled, np.array([{"not": "an image"}], dtype=object), allow_pickle=True)
  with pytest.raises(UserError, match="pickled.npy"):
    ops.parse(f"subtract_mean_image({pickled!r})")


def test_onehot_with_and_without_smoothing():
  hard = run("onehot(4)", np.zeros((2, 2, 3), np.uint8), label=tf.constant(2, tf.int32))["label"].numpy()
  np.testing.assert_array_equal(hard, [0, 0, 1, 0])
  soft = run("onehot(4, smoothing=0.2)", np.zeros((2, 2, 3), np.uint8), label=tf.constant(1, tf.int32))["label"]
  assert soft.dtype == tf.float32
  np.testing.assert_allclose(soft.numpy(), [0.05, 0.85, 0.05, 0.05], rtol=1e-6)
  assert soft.numpy().sum() == pytest.approx(1.0)


def test_ten_crop_takes_center_corners_and_their_mirrors():
  image = coords()
  out = image_of("ten_crop(20)", image)
  assert out.shape == (10, 20, 20, 3)
  for view, (top, left) in zip(out, [(14, 22), (0, 0), (0, 44), (28, 0), (28, 44)]):
    np.testing.assert_array_equal(view, image[top : top + 20, left : left + 20])
  np.testing.assert_array_equal(out[5:], out[:5, :, ::-1])
  assert len({view.tobytes() for view in out}) == 10


def test_grid_crops_offsets_are_rounded_linspace_row_major():
  image = coords()
  out = image_of("grid_crops(22)", image)
  assert out.shape == (50, 22, 22, 3)
  rows, cols = [0, 6, 13, 20, 26], [0, 10, 21, 32, 42]  # linspace(0, 26, 5) and (0, 42, 5), half to even
  for view, (top, left) in zip(out, [(top, left) for top in rows for left in cols]):
    np.testing.assert_array_equal(view, image[top : top + 22, left : left + 22])
  np.testing.assert_array_equal(out[25:], out[:25, :, ::-1])
  assert image_of("grid_crops(20, grid=3, flips=False)", image).shape == (9, 20, 20, 3)


def test_vgg_multi_crop_is_grid_crops_at_each_scale():
  image = quadrants()
  out = image_of("vgg_multi_crop(16, scales=(20, 24), grid=2)", image)
  assert out.shape == (16, 16, 16, 3)
  for views, scale in zip(np.split(out, 2), (20, 24)):
    np.testing.assert_array_equal(views, image_of("grid_crops(16, grid=2)", resized(image, scale)))
  assert image_of("vgg_multi_crop", image).shape == (150, 224, 224, 3)


@pytest.mark.parametrize("height, width", [(40, 60), (60, 40)])
def test_googlenet_crops_take_three_squares_along_the_longer_side(height, width):
  image = coords(height, width)
  out = image_of("googlenet_crops(32, scales=(40, 48))", image)
  assert out.shape == (72, 32, 32, 3)
  np.testing.assert_array_equal(out[36:], out[:36, :, ::-1])
  # At scale 40 the image keeps its size: the squares start at 0, 10 and 20 along the longer side.
  for index, offset in enumerate((0, 10, 20)):
    top, left = (0, offset) if width > height else (offset, 0)
    square = image[top : top + 40, left : left + 40]
    views = out[6 * index : 6 * index + 6]
    for view, (y, x) in zip(views, [(4, 4), (0, 0), (0, 8), (8, 0), (8, 8)]):
      np.testing.assert_array_equal(view, square[y : y + 32, x : x + 32])
    np.testing.assert_array_equal(views[5], image_of("resize(32)", square))
  assert image_of("googlenet_crops", quadrants()).shape == (144, 224, 224, 3)


@pytest.mark.parametrize(
  "spec, encode",
  [
    ("random_crop(20)", np.asarray),
    ("flip_lr", np.asarray),
    ("decode_and_inception_crop(24)", jpeg),
    ("decode_and_inception_crop(24)", png),
    ("inception_crop(24)", np.asarray),
    ("random_resize_small(20, 40)", np.asarray),
    ("pca_lighting", np.asarray),
    ("color_jitter(0.4, 0.4, 0.4, 0.1)", np.asarray),
  ],
)
def test_random_ops_repeat_for_a_seed_and_vary_across_seeds(spec, encode):
  source = encode(coords())
  first = image_of(spec, source, tf.constant([5, 6], tf.int64))
  np.testing.assert_array_equal(first, image_of(spec, source, tf.constant([5, 6], tf.int64)))
  others = [image_of(spec, source, tf.constant([seed, 6], tf.int64)) for seed in range(8)]
  assert any(other.shape != first.shape or not np.array_equal(other, first) for other in others)


def test_parse_rejects_a_crop_larger_than_a_known_size():
  with pytest.raises(UserError) as error:
    ops.parse("decode|resize_small(256)|flip_lr|center_crop(320)")
  assert str(error.value) == (
    "center_crop(320) is larger than the 256-pixel shorter side that resize_small(256) "
    "leaves: crop at most 256, or resize to at least 320"
  )
  for spec in [
    "random_resize_small(200, 300)|random_crop(224)",
    "decode_and_inception_crop(224)|ten_crop(256)",
    "resize(64)|grid_crops(80)",
    "decode_and_center_crop(32)|normalize|center_crop(40)",
  ]:
    with pytest.raises(UserError, match="is larger than"):
      ops.parse(spec)
  for spec in [
    "random_resize_small(256, 480)|random_crop(224)",
    "resize(32)|random_crop(36, pad=4)",
    "decode|center_crop(320)",
    "resize_small(256)|decode|ten_crop(320)",
  ]:
    ops.parse(spec)


@pytest.mark.parametrize("spec", ["center_crop(80)", "random_crop(80)", "ten_crop(80)", "grid_crops(80)"])
def test_crops_of_an_image_too_small_fail_at_run_time(spec):
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"crop.*80x80.*48x64"):
    image_of(f"decode|{spec}", png(coords()))
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"crop.*80x80.*48x64"):
    images_over_seeds(f"decode|{spec}", png(coords()), 1)


@pytest.mark.parametrize(
  "spec",
  [
    "vgg_multi_crop(224, scales=(200, 256))",
    "googlenet_crops(64, scales=(32,))",
    "color_jitter(hue=0.6)",
    "color_jitter(brightness=-1)",
    "random_resize_small(9, 8)",
  ],
)
def test_bad_op_arguments_are_user_errors(spec):
  with pytest.raises(UserError):
    ops.parse(spec)
