"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012) adapted to 28x28 Fashion-MNIST.

    python -m imagenet_train train --config=configs/alexnet_fashion_mnist.py --workdir=workdirs/alexnet_fmnist
    python -m imagenet_train train --config=configs/alexnet_fashion_mnist.py:full --workdir=workdirs/alexnet_fmnist_full

The paper's network (`alexnet`: LRN after conv1 and conv2, overlapping 3x3 stride-2 pooling,
dropout 0.5 in FC6 and FC7) with the changes a 28x28 grey image needs, `stem="small"`: conv1 is
a 3x3 stride-1 convolution instead of 11x11 stride 4 (which would leave 5x5 before the first
pooling and nothing after the second), so the poolings leave 13, 6 and 2 pixels, and FC6 reads
the final 2x2 map as it is instead of the 6x6 map of a 227 input. One input channel. Weights
from He et al.'s N(0, 2 / fan-in) with biases of 0 (`initializer="he"`): from the paper's
N(0, 0.01) and biases of 1, the narrow network below was still at chance (loss 2.30) after 200
steps here (`--config.model_options.initializer=paper` restores them).

The default argument is sized for a 2-core CPU: `width_multiplier=0.125` (conv widths
12-32-48-48-32, FC 512) in one tower, since XLA's CPU backend runs the paper's grouped
convolutions at under half the speed of plain ones, for 15 epochs. `full` is the paper's widths
(96-256-384-384-256, FC 4096) in its two towers for 30 epochs, for a GPU. Recipe: SGD with
Nesterov momentum 0.9, batch 128, learning rate 0.03 with a half-epoch warm-up (one epoch
for `full`) and cosine decay, weight decay 5e-4 on every weight, random horizontal flips, fp32
on the CPU (bf16 for `full`). `:smoke` runs two steps of a narrower one (`SMOKE`).

Measured with the default argument on an otherwise idle 2-core x86-64 CPU, no accelerator:
91.90% test accuracy (top-5 99.92%) after 15 epochs, 546 s of wall time, 28 s of it
evaluation, 1,736 training images/s. Not measured: `full`.

The comparison row: the Fashion-MNIST benchmark's only AlexNet was trained with a triplet
loss, not cross-entropy (see the paper block's notes).
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("", "full", "smoke")
SMOKE = "smoke"


def get_config(arg=None):
  a = arguments.parse_arg(arg, full=False, smoke=False)
  c = schema.base_config()
  c.model = "alexnet"
  c.model_options.stem = "small"
  c.model_options.initializer = "he"  # from the paper's N(0, 0.01) a narrow AlexNet stays at chance for long
  c.model_options.width_multiplier = 1.0 if a.full else 0.125
  # XLA's CPU backend runs grouped convolutions at under half the speed of plain ones.
  c.model_options.towers = 2 if a.full else 1
  recipes.fashion_mnist_recipe(
    c, learning_rate=0.03, epochs=30.0 if a.full else 15.0, warmup_epochs=1.0 if a.full else 0.5, full=a.full
  )
  p = c.paper
  p.table = "Benchmark, table of submitted benchmarks: row 'AlexNet with Triplet loss' (Cenk Bircanoglu)"
  p.top1 = 10.1  # test accuracy 0.899
  p.notes = (
    "No preprocessing; trained with a triplet loss (openface), not this config's cross-entropy, and "
    "the row gives no widths, input size or epochs. The authors list submitted results untested."
  )

  if a.smoke:
    smoke.make_smoke(c, width_multiplier=1 / 16)
  return c
