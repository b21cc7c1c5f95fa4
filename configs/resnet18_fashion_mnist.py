"""ResNet-18 adapted to 28x28 Fashion-MNIST, for GPU runs.

    python -m imagenet_train train --config=configs/resnet18_fashion_mnist.py --workdir=workdirs/resnet18_fmnist

The adaptation: the 7x7 stride-2 stem and its max pooling would shrink a 28x28 image to 7x7
before the first residual stage, so the stem is one 3x3 stride-1 convolution (the CIFAR
ResNets' stem); the four stages then see 28, 14, 7 and 4 pixels. Everything else is the
ResNet-18 of He et al. (2015) with torchvision's v1.5 blocks (11.2 M parameters with 10
classes). Recipe: SGD with Nesterov momentum 0.9, batch 128, learning rate 0.1 with 2 warm-up
epochs and cosine decay over 30 epochs, weight decay 5e-4 on every weight, bf16 compute,
random crops (4-pixel zero padding) and horizontal flips.

Expected, not yet measured by this project: about 95% test accuracy (the Fashion-MNIST
benchmark lists a ResNet-18 at 94.9%). On this project's 2-core CPU machines its train step
runs at about 10 images/s (`make bench`), far too slow for 30 epochs: run it on a GPU, or
shorten it with --config.num_epochs.
"""

from imagenet_train.defaults import base_config, fashion_mnist_data


def get_config():
  c = base_config()
  c.model = "resnet18"
  c.model_options.stem = "small"
  c.model_options.width = 64
  c.model_options.stride_on = "3x3"
  c.model_options.zero_init_last_norm = False
  c.dtype = "bfloat16"
  c.data = fashion_mnist_data(train_ops="random_crop(28, pad=4)|flip_lr")

  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = 30.0
  c.learning_rate = 0.1
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 5e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = 2.0

  c.log_every_steps = 100
  c.eval_every_epochs = 1.0
  c.checkpoint_every_steps = 2000
  return c
