"""Fake ILSVRC2012 tarballs in the official layout, for tests and the input benchmark.

`ILSVRC2012_img_train.tar` holds one `<wnid>.tar` per class of `<wnid>_<n>.JPEG` files and
`ILSVRC2012_img_val.tar` holds `ILSVRC2012_val_%08d.JPEG` files, as in the real download, so
tfds's own `imagenet2012` builder reads them through `manual_dir` unchanged. Like the real
archive, the training set can hold a CMYK JPEG and a PNG saved as `.JPEG`, under the file
names tfds knows to convert. Image content is a smooth random colour field with grain, which
compresses like a photograph rather than like flat colour or white noise.
"""

import io
import os
import tarfile

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from imagenet_train.data.prepare import IMAGENET_TRAIN_TAR, IMAGENET_VAL_TAR

# Real ILSVRC2012 training files that are CMYK JPEGs and a PNG; tfds converts these by name.
CMYK_FILE, PNG_FILE = "n01739381_1309.JPEG", "n02105855_2933.JPEG"
_DEFAULT_WNIDS = ("n01440764", "n01739381", "n02105855", "n02119789")


def photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """An RGB uint8 image: a bilinearly upsampled coarse colour grid plus per-pixel grain."""
  coarse = rng.uniform(0, 255, (5, 5, 3))
  rows = np.linspace(0, 4, height)
  cols = np.linspace(0, 4, width)
  r0, c0 = np.minimum(rows.astype(int), 3), np.minimum(cols.astype(int), 3)
  fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
  top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
  bottom = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
  smooth = top * (1 - fr) + bottom * fr
  return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def encode(image: np.ndarray, file_format: str = "JPEG", mode: str = "RGB") -> bytes:
  buffer = io.BytesIO()
  picture = Image.fromarray(image, "RGB")
  if mode == "CMYK":
    picture = picture.convert("CMYK")
  picture.save(buffer, file_format, **({"quality": 90} if file_format == "JPEG" else {}))
  return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, payload: bytes):
  info = tarfile.TarInfo(name)
  info.size = len(payload)
  archive.addfile(info, io.BytesIO(payload))


def imagenet_wnids() -> list[str]:
  """ILSVRC2012's 1000 class wnids in label order, from tfds's own label file."""
  return tfds.core.tfds_path("datasets/imagenet2012/labels.txt").read_text().split()


def _validation_wnids() -> list[str]:
  """The wnid of every validation image, in file-name order, from tfds's own label file."""
  return tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt").read_text().split()


def write_tarballs(
  manual_dir: str,
  *,
  wnids=_DEFAULT_WNIDS,
  train_per_class: int = 6,
  num_val: int = 24,
  size=(48, 64),
  seed: int = 0,
  cmyk_and_png: bool = True,
  truncate: str | None = None,
) -> dict:
  """Writes the two tarballs into `manual_dir` and returns what it wrote.

  `size` is (height, width) or a ((min_h, max_h), (min_w, max_w)) range drawn per image.
  `truncate` names one file to cut short, a corrupt JPEG as users meet them. The returned
  dict maps each file name to its label wnid and its RGB pixels before encoding.
  """
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  written = {}

  def draw(name, wnid, file_format="JPEG", mode="RGB"):
    (h0, h1), (w0, w1) = size if isinstance(size[0], (tuple, list)) else ((size[0],) * 2, (size[1],) * 2)
    image = photo_like(rng, int(rng.integers(h0, h1 + 1)), int(rng.integers(w0, w1 + 1)))
    payload = encode(image, file_format, mode)
    if name == truncate:
      payload = payload[: len(payload) // 2]
    written[name] = {"wnid": wnid, "pixels": image}
    return payload

  with tarfile.open(os.path.join(manual_dir, IMAGENET_TRAIN_TAR), "w") as train:
    for wnid in wnids:
      names = [f"{wnid}_{n}.JPEG" for n in range(1, train_per_class + 1)]
      if cmyk_and_png and wnid == CMYK_FILE.split("_")[0]:
        names[-1] = CMYK_FILE
      if cmyk_and_png and wnid == PNG_FILE.split("_")[0]:
        names[-1] = PNG_FILE
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode="w") as class_tar:
        for name in names:
          file_format, mode = ("PNG", "RGB") if name == PNG_FILE else ("JPEG", "CMYK" if name == CMYK_FILE else "RGB")
          _add(class_tar, name, draw(name, wnid, file_format, mode))
      _add(train, f"{wnid}.tar", inner.getvalue())

  val_wnids = _validation_wnids()
  with tarfile.open(os.path.join(manual_dir, IMAGENET_VAL_TAR), "w") as val:
    for index in range(num_val):
      name = f"ILSVRC2012_val_{index + 1:08d}.JPEG"
      _add(val, name, draw(name, val_wnids[index]))
  return written
