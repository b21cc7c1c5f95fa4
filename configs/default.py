"""LeNet-5 on Fashion-MNIST: the default run, end to end on a 2-core CPU in about 4 minutes.

    python -m imagenet_train train --config=configs/default.py --workdir=workdirs/default

LeNet-5 (LeCun et al., 1998) with ReLU and max pooling, the modern reading of the paper's
network (the paper's tanh and average pooling: --config.model_options.activation=tanh
--config.model_options.pooling=avg); SGD with Nesterov momentum, one warm-up epoch then cosine
decay, random horizontal flips. Expected: about 91% test accuracy after 9 epochs, about 4
minutes on 2 CPU cores (the README lists the measured run). The Fashion-MNIST files come from
Debian's `dataset-fashion-mnist` package.
"""

from imagenet_train.defaults import base_config, fashion_mnist_data


def get_config():
  c = base_config()
  c.model = "lenet5"
  c.model_options.activation = "relu"
  c.model_options.pooling = "max"
  c.dtype = "float32"  # bf16 buys nothing on a CPU
  c.data = fashion_mnist_data(train_ops="flip_lr")

  c.batch_size = 256
  c.eval_batch_size = 1000
  c.num_epochs = 9.0
  c.learning_rate = 0.1
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 5e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = 1.0

  c.log_every_steps = 200
  c.eval_every_epochs = 3.0
  c.checkpoint_every_steps = 1000
  return c
