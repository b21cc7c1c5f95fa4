"""A tfds builder for Fashion-MNIST read from local IDX files, such as Debian's.

`apt-get install dataset-fashion-mnist` puts the four IDX files (gzipped or not) in
/usr/share/datasets/fashion-mnist; this builder reads them from its manual_dir, so the same
tfds pipeline serves Fashion-MNIST here and ImageNet (tfds's `imagenet2012` with its own
manual_dir) elsewhere, without any network access.
"""

import gzip
import os
import struct

import numpy as np
import tensorflow_datasets as tfds

DEFAULT_MANUAL_DIR = "/usr/share/datasets/fashion-mnist"
_FILES = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASS_NAMES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


def idx_path(directory: str, stem: str) -> str | None:
  """The IDX file `stem` in `directory`, gzipped or plain, or None if neither exists."""
  for name in (stem + ".gz", stem):
    path = os.path.join(directory, name)
    if os.path.exists(path):
      return path
  return None


def missing_files(directory: str) -> list[str]:
  return [stem for stems in _FILES.values() for stem in stems if idx_path(directory, stem) is None]


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (LeCun's format: big-endian dims after a type and rank header)."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  zero, dtype_code, rank = struct.unpack(">HBB", data[:4])
  if zero != 0 or dtype_code != 0x08:
    raise ValueError(f"{path} is not an unsigned-byte IDX file")
  shape = struct.unpack(f">{rank}I", data[4 : 4 + 4 * rank])
  values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
  if values.size != int(np.prod(shape)):
    raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {values.size}")
  return values.reshape(shape)


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017) from local IDX files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Reads the IDX files from manual_dir."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Install Debian's package (`apt-get install dataset-fashion-mnist`, files in {DEFAULT_MANUAL_DIR}) "
    "or put the four IDX files from the Fashion-MNIST repository in manual_dir."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(28, 28, 1)),
          "label": tfds.features.ClassLabel(names=CLASS_NAMES),
        }
      ),
      supervised_keys=("image", "label"),
      homepage="https://github.com/zalandoresearch/fashion-mnist",
    )

  def _split_generators(self, dl_manager):
    directory = str(dl_manager.manual_dir)
    return {split: self._generate_examples(directory, *stems) for split, stems in _FILES.items()}

  def _generate_examples(self, directory, images_stem, labels_stem):
    images = read_idx(idx_path(directory, images_stem))
    labels = read_idx(idx_path(directory, labels_stem))
    if len(images) != len(labels):
      raise ValueError(f"{images_stem} holds {len(images)} images but {labels_stem} {len(labels)} labels")
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image[..., None], "label": int(label)}
