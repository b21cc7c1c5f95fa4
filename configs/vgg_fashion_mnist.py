"""VGG-16 (Simonyan and Zisserman, 2014, configuration D) adapted to 28x28 Fashion-MNIST.

    python -m imagenet_train train --config=configs/vgg_fashion_mnist.py --workdir=workdirs/vgg_fmnist
    python -m imagenet_train train --config=configs/vgg_fashion_mnist.py:full --workdir=workdirs/vgg_fmnist_full

VGG-16 with BatchNorm after every convolution (`vgg_d_bn`, torchvision's vgg16_bn), which
trains at a high learning rate in the few epochs a CPU run affords (`--config.model=vgg_d` is
the paper's network), with `small_input=True`, the changes a 28x28 grey image needs: the five
2x2 poolings round up, so the maps are 28, 14, 7, 4, 2 and 1 pixels instead of vanishing at
the fifth pooling, and the head's first layer is a 1x1 convolution on that 1x1 map (a fully
connected layer on 512 features) instead of the 7x7 one a 224 input needs. One input channel.

The default argument is sized for a 2-core CPU: `width_multiplier=0.125` (conv widths 8 to 64,
head 512; 0.53 M parameters) for 12 epochs. `full` is the paper's widths (64 to 512, head 4096;
33.6 M parameters) for 30 epochs, for a GPU. Recipe: SGD with Nesterov momentum 0.9, batch 128,
learning rate 0.05 with a half-epoch warm-up (one epoch for `full`) and cosine decay, weight
decay 5e-4 on every weight, random horizontal flips, fp32 on the CPU (bf16 for `full`).
`:smoke` runs two steps of a narrower one (`SMOKE`).

Measured with the default argument on an otherwise idle 2-core x86-64 CPU, no accelerator:
92.76% test accuracy (top-5 99.82%) after 12 epochs, 487 s of wall time, 23 s of it
evaluation, 1,549 training images/s. Not measured: `full`.
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("", "full", "smoke")
SMOKE = "smoke"


def get_config(arg=None):
  a = arguments.parse_arg(arg, full=False, smoke=False)
  c = schema.base_config()
  c.model = "vgg_d_bn"
  c.model_options.small_input = True
  c.model_options.width_multiplier = 1.0 if a.full else 0.125
  recipes.fashion_mnist_recipe(
    c, learning_rate=0.05, epochs=30.0 if a.full else 12.0, warmup_epochs=1.0 if a.full else 0.5, full=a.full
  )
  p = c.paper
  p.table = "Benchmark, table of submitted benchmarks: row 'VGG16 26M parameters' (@QuantumLiu, Keras)"
  p.top1 = 6.5  # test accuracy 0.935
  p.notes = (
    "No preprocessing; a Keras VGG16 of 26 M parameters whose input size, BatchNorm and epochs the row "
    "does not give. The authors list submitted results untested."
  )

  if a.smoke:
    smoke.make_smoke(c, width_multiplier=1 / 16)
  return c
