r"""Inception-v4 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke and Alemi, AAAI 2017), Google's ILSVRC 2016 models.

    python -m imagenet_train train --config=configs/inception_v4.py:v4 --workdir=workdirs/inception_v4
    python -m imagenet_train evaluate --config=configs/inception_v4.py:v4 --workdir=workdirs/inception_v4 \
        --protocol=center

The argument is MODEL: `v4` (the default) or `resnet_v2` (Inception-ResNet-v2), both as
Google released them in TF-slim (299x299 inputs, BatchNorm after every convolution, dropout
0.2 before the classifier, as the paper's "keep 0.8"). An ensemble of one Inception-v4 and
three Inception-ResNet-v2 scored 3.08% top-5 on the ILSVRC test set.

Recipe (the paper's training methodology, Inception-v3's): RMSProp with decay 0.9 and epsilon
1.0 (momentum 0.9, TF-slim's), learning rate decayed by 0.94 every 2 epochs, evaluation with
a running average of the parameters (here an exponential moving average with decay 0.9999,
evaluated beside the raw parameters). Where the paper is silent this config takes
Inception-v3's choices: TF-slim's inception_preprocessing (random crops of 5-100% of the
area with aspect 3/4-4/3 resized to 299, flips, colour distortions, pixels scaled to [-1,
1]), label smoothing 0.1, weight decay 4e-5; evaluation on the central 87.5% resized to 299.
Add `smoke` for two steps of Inception-v4 at its smallest input, 75x75, on fake ILSVRC2012
data (`SMOKE`).

Hardware and time (estimates, not measurements): at 12.3 G (v4) and 13.2 G (resnet_v2)
multiply-adds, the measured ResNet-50 rate (5,000 images/s in bf16 on one H100 at 4.1 G) less
a quarter gives about 1,250 and 1,150 images/s: 160 epochs (205 M images) take about 45 and 50
H100-hours, about 6 hours on 8 GPUs if the input pipeline keeps up (about one CPU core per 500
images/s).

Departures from the paper: it trained 20 replicas without giving their batch size or the
length of training; this config trains synchronously at batch 256 with learning rate 0.165
per 256 images (Google's TPU reference for Inception-v3, 0.165 x batch / 256, where the paper
gives 0.045 per replica) for 160 epochs, about as long as the paper's training curves run.
The released networks' auxiliary classifiers are not part of these models, and Inception-v3's
gradient clipping is not applied, since the paper does not mention it here. bf16 compute.
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("v4", "resnet_v2")
SMOKE = "v4,smoke"

MODELS = {"v4": "inception_v4", "resnet_v2": "inception_resnet_v2"}
# Validation errors in percent from memory of the paper: (single crop top-1, top-5, 144 crops top-1, top-5).
_PAPER = {"v4": (20.0, 5.0, 17.7, 3.8, "Inception-v4"), "resnet_v2": (19.9, 4.9, 17.8, 3.7, "Inception-ResNet-v2")}


def get_config(arg=None):
  a = arguments.parse_arg(arg, model="v4", smoke=False)
  arguments.check_choice("model", a.model, tuple(MODELS))
  c = schema.base_config()
  c.model = MODELS[a.model]
  c.model_options.dropout_rate = 0.2
  recipes.inception_recipe(c, size=75 if a.smoke else 299, epochs=160.0)

  top1, top5, top1_144, top5_144, name = _PAPER[a.model]
  p = c.paper
  p.reference = "Szegedy, Ioffe, Vanhoucke and Alemi, AAAI 2017 (arXiv 1602.07261)"
  p.table = f"Table 2, {name}, single crop"
  p.protocol, p.split = "center", "val"
  p.top1, p.top5 = top1, top5
  p.ensemble_models = 4
  p.ensemble_protocol = "144crop"
  p.ensemble_split = "test"
  p.ensemble_top5 = 3.08
  p.notes = (
    f"The single-model errors are from memory of the paper, not checked; so is {name} over 144 crops, "
    f"{top1_144} / {top5_144} (--protocol=144crop). Checked: the ensemble of Inception-v4 and three "
    "Inception-ResNet-v2 over 144 crops, 3.08% top-5 on test and 3.1% on val (16.5% top-1 on val from "
    "memory)."
  )

  if a.smoke:
    batch = c.batch_size
    smoke.make_smoke(c)
    c.learning_rate *= c.batch_size / batch  # the rate per image: the full one on 8 images blows up the eval loss
  return c
