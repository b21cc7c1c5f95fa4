"""GoogLeNet (Szegedy et al., 2014) adapted to 28x28 Fashion-MNIST.

    python -m imagenet_train train --config=configs/googlenet_fashion_mnist.py --workdir=workdirs/googlenet_fmnist
    python -m imagenet_train train --config=configs/googlenet_fashion_mnist.py:full \
        --workdir=workdirs/googlenet_fmnist_full

torchvision's GoogLeNet (`googlenet_torchvision`: BatchNorm after every convolution, which
trains at a high learning rate in the few epochs a CPU run affords; `--config.model=googlenet`
is the paper's network with LRN and 5x5 branches) with its two auxiliary heads (loss weight
0.3) and `stem="small"`, the change a 28x28 grey image needs: conv1 is a 3x3 stride-1
convolution and the max pooling after it goes, so the stem shrinks the image by 2 rather than
8 and the Inception stages see 14, 7 and 4 pixels instead of 3, 1 and 1; the auxiliary heads
pool their 7x7 grid to 4x4. One input channel.

The default argument is sized for a 2-core CPU: `width_multiplier=0.125` (every convolution and
the auxiliary FC layers at an eighth of their widths; 0.16 M parameters) for 3 epochs: its 57
small convolutions make it the slowest of the track on a CPU (`benchmarks/step_throughput.py`
measured its step at about 400 images/s on an idle 2-core CPU, against about 1,000 for ResNet-18).
`full` is the paper's widths (9.95 M parameters with the auxiliary heads) for 30 epochs, for a
GPU. Recipe: SGD with Nesterov momentum 0.9, batch 128, learning rate 0.1 with a warm-up of a
quarter of an epoch (one epoch for `full`) and cosine decay, weight decay 5e-4 on every weight,
random horizontal flips, fp32 on the CPU (bf16 for `full`). `:smoke` runs two steps of a
narrower one (`SMOKE`).

Measured with the default argument on an otherwise idle 2-core x86-64 CPU, no accelerator:
90.90% test accuracy (top-5 99.87%) after 3 epochs, 460 s of wall time, 12 s of it
evaluation, 401 training images/s (the compilation counted in). Not measured: `full`.
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("", "full", "smoke")
SMOKE = "smoke"


def get_config(arg=None):
  a = arguments.parse_arg(arg, full=False, smoke=False)
  c = schema.base_config()
  c.model = "googlenet_torchvision"
  c.model_options.stem = "small"
  c.model_options.width_multiplier = 1.0 if a.full else 0.125
  recipes.fashion_mnist_recipe(
    c, learning_rate=0.1, epochs=30.0 if a.full else 3.0, warmup_epochs=1.0 if a.full else 0.25, full=a.full
  )
  p = c.paper
  p.table = "Benchmark, table of submitted benchmarks: row 'GoogleNet with cross-entropy loss' (Cenk Bircanoglu)"
  p.top1 = 6.3  # test accuracy 0.937
  p.notes = (
    "No preprocessing (openface's training code); the row gives no widths, input size or epochs. The "
    "authors list submitted results untested."
  )

  if a.smoke:
    smoke.make_smoke(c, width_multiplier=1 / 16)
  return c
