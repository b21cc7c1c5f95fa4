"""Input pipelines: tfds builders, preprocessing ops and per-host iterators of batches.

This package's root imports no TensorFlow, so that code which only needs to know a dataset's
shape (the step benchmark, say) runs on machines without it.
"""

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_classes: int
  image_shape: tuple[int, ...]
  num_train_examples: int
  num_eval_examples: int
  # (mean, std) of a final `normalize` op left for the accelerator to apply, or None.
  device_normalize: tuple | None = None
  # The shape of the images the eval spec emits (train's periodic evaluation); None: image_shape.
  eval_image_shape: tuple[int, ...] | None = None


def op_error_reason(message: str) -> str:
  """The first line of a TensorFlow op error without the op and device decorations around it."""
  return re.sub(r"\{\{.*?\}\}|\[Op:\w+\]|\[\[.*?\]\]", "", message.splitlines()[0]).strip()
