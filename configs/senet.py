r"""Squeeze-and-Excitation networks (Hu, Shen and Sun, CVPR 2018), the ILSVRC 2017 winner, with the paper's recipe.

    python -m imagenet_train train --config=configs/senet.py:se_resnet50 --workdir=workdirs/se_resnet50
    python -m imagenet_train evaluate --config=configs/senet.py:se_resnet50 --workdir=workdirs/se_resnet50 \
        --protocol=center

The argument is MODEL: se_resnet50 (the default), se_resnet101, se_resnet152,
se_resnext50_32x4d, se_resnext101_32x4d or senet154. Every residual branch ends in an SE block
(global pooling, FC to C/16, ReLU, FC back, sigmoid, channel scaling) before the addition;
SE-ResNets stride on the first 1x1 convolution (the paper's FLOP counts match that),
SE-ResNeXts on the 3x3. SENet-154 is the competition network: SE-ResNeXt-152 64x4d with a
3-convolution stem, halved first 1x1 convolutions, 3x3 projections and dropout 0.2.

Recipe (the paper's implementation section): random-size crops (scale and aspect, to 224) and flips,
mean RGB subtraction; synchronous SGD with momentum 0.9, batch 1024, learning rate 0.6
divided by 10 every 30 epochs, 100 epochs; evaluation on the central 224 crop of the image
resized to 256. SENet-154 adds label smoothing.
Add `,smoke` for two steps of a narrow SE-ResNet-50 on fake ILSVRC2012 data (`SMOKE`).

Hardware and time (estimates, not measurements): from the measured ResNet-50 step (about
5,000 images/s in bf16 on one H100), allowing 15% for the SE blocks and scaling by
multiply-adds, 100 epochs (128 M images) take about 9 H100-hours for SE-ResNet-50, 16 for
SE-ResNet-101, 22 for SE-ResNet-152, 10 for SE-ResNeXt-50, 19 for SE-ResNeXt-101 and 40 for
SENet-154; batch 1024 suits 8 GPUs or more, and the input pipeline needs about one CPU core
per 500 images/s.

Departures from the paper: its mini-batches were class-balanced ("data balancing"), which the
pipeline does not do; weight decay is not given in the text, so this config uses 1e-4, the
value of the ResNet recipes it builds on. For SENet-154 the paper also froze BatchNorm for the
last few epochs, which this trainer does not do, and its label-smoothing strength is not
given (0.1, Inception-v3's, here). bf16 compute.
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("se_resnet50", "se_resnet101", "se_resnet152", "se_resnext50_32x4d", "se_resnext101_32x4d", "senet154")
SMOKE = "se_resnet50,smoke"

# Validation errors in percent, single 224 crop: (top-1, top-5, where, checked against the paper's text).
_PAPER = {
  "se_resnet50": (23.29, 6.62, "Table 2, SE-ResNet-50, 224 single crop", True),
  "se_resnet101": (22.38, 6.07, "Table 2, SE-ResNet-101, 224 single crop", True),
  "se_resnet152": (21.57, 5.73, "Table 2, SE-ResNet-152, 224 single crop", False),
  "se_resnext50_32x4d": (21.10, 5.49, "Table 2, SE-ResNeXt-50 (32x4d), 224 single crop", True),
  "se_resnext101_32x4d": (20.70, 5.01, "Table 2, SE-ResNeXt-101 (32x4d), 224 single crop", False),
  "senet154": (18.68, 4.47, "comparison with the state of the art, SENet-154, 224 single crop", True),
}


def get_config(arg=None):
  a = arguments.parse_arg(arg, model="se_resnet50", smoke=False)
  arguments.check_choice("model", a.model, tuple(_PAPER))
  c = schema.base_config()
  c.model = a.model  # each SE model's stride_on, stem and dropout defaults are the paper's
  crop, resize = (32, 36) if a.smoke else (224, 256)
  # Mean RGB subtraction on the 0..255 scale, as the paper (and its Caffe models) normalised.
  mean = f"subtract_mean(mean={tuple(round(255 * m, 3) for m in recipes.IMAGENET_MEAN)})"
  c.data = recipes.imagenet_data(
    f"decode_and_inception_crop({crop})|flip_lr|{mean}", f"decode(3)|resize_small({resize})|center_crop({crop})|{mean}"
  )

  c.batch_size = 1024
  c.learning_rate = 0.6
  c.optimizer.sgd.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_mode = "l2"
  c.num_epochs = 100.0
  c.schedule.name = "steps"
  c.schedule.boundaries_epochs = (30, 60, 90)
  c.schedule.decay_factor = 0.1
  if a.model == "senet154":
    c.label_smoothing = 0.1
  c.evaluation.protocol = "center"
  c.evaluation.resize, c.evaluation.crop = 256, 224

  top1, top5, table, checked = _PAPER[a.model]
  p = c.paper
  p.reference = "Hu, Shen and Sun, CVPR 2018 (arXiv 1709.01507)"
  p.table, p.protocol, p.split, p.top1, p.top5 = table, "center", "val", top1, top5
  notes = [
    "The ILSVRC 2017 entry, an ensemble of SENets evaluated at several scales and crops, won with 2.251% top-5 on test."
  ]
  if not checked:
    notes.append("These errors are from memory of the paper's table, not checked against it.")
  if a.model == "senet154":
    notes.append("At a 320 crop the paper gives 17.28 / 3.79 (from memory).")
  p.notes = " ".join(notes)

  if a.smoke:
    batch = c.batch_size
    smoke.make_smoke(c, width=8)
    c.learning_rate *= c.batch_size / batch  # the rate per image: the full one on 8 images blows up the eval loss
  return c
