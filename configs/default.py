"""LeNet-5 on Fashion-MNIST: the default run, end to end on a 2-core CPU in a few minutes.

    python -m imagenet_train train --config=configs/default.py --workdir=workdirs/default

LeNet-5 (LeCun et al., 1998) with ReLU and max pooling, the modern reading of the paper's
network; SGD with Nesterov momentum, cosine decay, light augmentation. Expected: about 91%
test accuracy after 20 epochs, a few minutes on 2 CPU cores (see README for the measured run).
The Fashion-MNIST files come from Debian's `dataset-fashion-mnist` package.
"""

from imagenet_train.defaults import base_config


def get_config():
  c = base_config()
  c.model = "lenet5"
  c.model_options.activation = "relu"
  c.model_options.pooling = "max"
  c.dtype = "float32"  # bf16 buys nothing on a CPU

  c.data.name = "fashion_mnist_local"
  c.data.manual_dir = "/usr/share/datasets/fashion-mnist"
  c.data.eval_split = "test"
  c.data.pp_train = "decode(1)|random_crop(28, pad=2)|flip_lr|normalize(mean=0.286, std=0.353)"
  c.data.pp_eval = "decode(1)|normalize(mean=0.286, std=0.353)"
  c.data.shuffle_buffer = 60_000
  c.data.cache_raw = True

  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = 20.0
  c.learning_rate = 0.05
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 5e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = 1.0

  c.log_every_steps = 200
  c.eval_every_epochs = 5.0
  c.checkpoint_every_steps = 2000
  return c
