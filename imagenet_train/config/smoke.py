"""A recipe's smoke variant: the same model family, optimizer, schedule and pipeline for two small steps."""

import ml_collections

from imagenet_train.config.recipes import TFDS_SPLITS

# Where the smoke variants read fake ILSVRC2012 data:
#   python -m imagenet_train prepare --dataset=imagenet2012 --fake --manual_dir=workdirs/fake_imagenet/manual \
#       --data_dir=workdirs/fake_imagenet/tfds
SMOKE_MANUAL_DIR, SMOKE_DATA_DIR = "workdirs/fake_imagenet/manual", "workdirs/fake_imagenet/tfds"


def make_smoke(c: ml_collections.ConfigDict, **model_options) -> ml_collections.ConfigDict:
  """Turns a recipe into its smoke variant: the same model family, optimizer, schedule and
  pipeline, two steps of 8 images in float32, with `model_options` (narrow widths) added. An
  ImageNet recipe reads fake ILSVRC2012 data (SMOKE_DATA_DIR); a Fashion-MNIST one keeps its
  data and evaluates on the first 64 test images. The caller has already set small image sizes."""
  if c.data.name == "fashion_mnist_local":
    c.data.eval_split = "test[:64]"
  else:
    c.data.name = "imagenet2012"
    c.data.data_dir, c.data.manual_dir = SMOKE_DATA_DIR, SMOKE_MANUAL_DIR
    c.data.train_split, c.data.eval_split = TFDS_SPLITS["imagenet2012"]
  c.data.shuffle_buffer = 64
  c.data.cache_raw = c.data.cache_eval = False
  c.model_options.update(model_options)
  c.dtype = "float32"
  c.batch_size = c.eval_batch_size = 8
  c.num_train_steps = 2
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.keep_checkpoints = 1
  c.async_checkpoints = False
  return c
