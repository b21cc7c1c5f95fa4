"""ResNet-18 (He et al., 2015) adapted to 28x28 Fashion-MNIST.

    python -m imagenet_train train --config=configs/resnet18_fashion_mnist.py --workdir=workdirs/resnet18_fmnist
    python -m imagenet_train train --config=configs/resnet18_fashion_mnist.py:full \
        --workdir=workdirs/resnet18_fmnist_full

The adaptation, `stem="small"`: the 7x7 stride-2 stem and its max pooling would shrink a 28x28
image to 7x7 before the first residual stage, so the stem is one 3x3 stride-1 convolution (the
CIFAR ResNets' stem); the four stages then see 28, 14, 7 and 4 pixels. Everything else is the
ResNet-18 of He et al. (2015) with torchvision's v1.5 blocks. One input channel.

The default argument is sized for a 2-core CPU: `width=8` (stage widths 8, 16, 32 and 64;
0.18 M parameters; width 16 ran at about a fifth of width 8's speed on a loaded CPU) for 8
epochs, with a half-epoch warm-up and random horizontal flips. `full` is the network at its
own widths (64 to 512; 11.2 M parameters) for 30 epochs with two warm-up epochs and random
crops (4-pixel zero padding) as well, for a GPU; its train step runs at about 10 images/s on
this project's 2-core CPUs (`make bench`). Both: SGD with Nesterov momentum 0.9, batch 128,
learning rate 0.1 with cosine decay, weight decay 5e-4 on every weight, fp32 on the CPU, bf16
for `full`. `:smoke` runs two steps of a narrower one (`SMOKE`).

Measured with the default argument on an otherwise idle 2-core x86-64 CPU, no accelerator:
93.15% test accuracy (top-5 99.96%) after 8 epochs, 428 s of wall time, 17 s of it
evaluation, 1,166 training images/s. Not measured: `full` (the benchmark's ResNet18 row reports
94.9%).
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("", "full", "smoke")
SMOKE = "smoke"


def get_config(arg=None):
  a = arguments.parse_arg(arg, full=False, smoke=False)
  c = schema.base_config()
  c.model = "resnet18"
  c.model_options.stem = "small"
  c.model_options.width = 64 if a.full else 8
  c.model_options.stride_on = "3x3"
  c.model_options.zero_init_last_norm = False
  recipes.fashion_mnist_recipe(
    c,
    learning_rate=0.1,
    epochs=30.0 if a.full else 8.0,
    warmup_epochs=2.0 if a.full else 0.5,
    full=a.full,
    train_ops="random_crop(28, pad=4)|flip_lr" if a.full else "flip_lr",
  )
  p = c.paper
  p.table = "Benchmark, table of submitted benchmarks: row 'ResNet18' (Kyriakos Efthymiadis, PyTorch)"
  p.top1 = 5.1  # test accuracy 0.949 (0.979 on MNIST)
  p.notes = (
    "Preprocessing: normalization, random horizontal and vertical flips, random translation and "
    "rotation; the row gives no widths or epochs. The authors list submitted results untested."
  )

  if a.smoke:
    smoke.make_smoke(c, width=4)
  return c
