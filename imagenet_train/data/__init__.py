"""Input pipelines: tfds builders, preprocessing ops and per-host iterators of batches.

This package's root imports no TensorFlow, so that code which only needs to know a dataset's
shape (the step benchmark, say) runs on machines without it.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_classes: int
  image_shape: tuple[int, ...]
  num_train_examples: int
  num_eval_examples: int
