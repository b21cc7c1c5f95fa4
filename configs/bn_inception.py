r"""BN-Inception (Ioffe and Szegedy, ICML 2015): GoogLeNet with Batch Normalization, the BN-x30 recipe.

    python -m imagenet_train train --config=configs/bn_inception.py --workdir=workdirs/bn_inception
    python -m imagenet_train evaluate --config=configs/bn_inception.py --workdir=workdirs/bn_inception \
        --protocol=center

The network of the paper's Figure 5 at 224x224: BatchNorm before every nonlinearity, 5x5
convolutions replaced by two 3x3, no LRN, no dropout, no auxiliary heads. Not an ILSVRC
entry, but its 6-model ensemble (4.9% top-5 on val, 4.82% on test) passed the 5.1% estimate
of human raters.

Recipe (the paper's section 4.2, BN-x30, whose single model reached 74.8% top-1): SGD with
momentum 0.9, learning rate 30 times Inception's (0.045 for mini-batches of 32), decayed
exponentially 6 times faster than Inception's 4% every 8 epochs (so 4% every 4/3 epoch),
weight decay 5 times lower than Inception's, no dropout, random crops of 8-100% of the area
with aspect 3/4-4/3 and flips (the photometric distortions reduced, here to none); evaluated
on the central 224 crop of the image resized to 256.
Add `smoke` for two steps at 32x32, the smallest input the model takes, on fake ILSVRC2012 data.

Hardware and time (estimates, not measurements): at 2.0 G multiply-adds, scaled from the
measured torchvision GoogLeNet (6,000 images/s at 1.5 G on one H100) to about 4,500 images/s,
100 epochs (128 M images) take about 8 H100-hours, one hour on 8 GPUs if the input pipeline
keeps up (about one CPU core per 500 images/s).

Departures from the paper: it trained asynchronously on many replicas of 32 images; this
config trains synchronously at batch 256 with the rate scaled linearly (Goyal et al., 2017)
to 0.045 x 256 / 32 = 0.36 after a 2-epoch linear warm-up. The paper names neither the
length of training (BN-x30 reached Inception's 72.2% after 2.7 M steps of 32, about 67
epochs; 100 epochs here) nor the weight decay (4e-5 here: 2e-4, the GoogLeNet Caffe
recipe's, divided by 5) nor the normalisation (ImageNet's per-channel mean and std here).
bf16 compute.
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("",)
SMOKE = "smoke"


def get_config(arg=None):
  a = arguments.parse_arg(arg, smoke=False)
  c = schema.base_config()
  c.model = "bn_inception"
  c.model_options.dropout_rate = 0.0
  crop, resize = (32, 36) if a.smoke else (224, 256)
  c.data = recipes.imagenet_data(
    f"decode_and_inception_crop({crop})|flip_lr|{recipes.IMAGENET_NORMALIZE}",
    f"decode(3)|resize_small({resize})|center_crop({crop})|{recipes.IMAGENET_NORMALIZE}",
  )

  c.batch_size = 256
  c.learning_rate = 0.045 * c.batch_size / 32
  c.optimizer.sgd.momentum = 0.9
  c.optimizer.weight_decay = 4e-5
  c.optimizer.weight_decay_mode = "l2"
  c.num_epochs = 100.0
  c.schedule.name = "exponential"
  c.schedule.decay_every_epochs = 8 / 6
  c.schedule.decay_factor = 0.96
  c.schedule.warmup_epochs = 2.0
  c.schedule.warmup_start_fraction = 0.1

  c.evaluation.protocol = "center"
  c.evaluation.resize, c.evaluation.crop = 256, 224

  p = c.paper
  p.reference = "Ioffe and Szegedy, ICML 2015 (arXiv 1502.03167)"
  p.table = "Figure 4 (the table comparing with the state of the art), BN-Inception single crop"
  p.protocol, p.split = "center", "val"
  p.top1, p.top5 = 25.2, 7.82
  p.ensemble_models = 6
  p.ensemble_protocol = "144crop"
  p.ensemble_split = "val"
  p.ensemble_top1, p.ensemble_top5 = 20.1, 4.9
  p.notes = (
    "One model over 144 crops: 21.99 / 5.82 (--protocol=144crop). The ensemble scored 4.82% top-5 on "
    "test. The ensemble's members were BN-x30 variants (some with 5-10% dropout or larger initial "
    "weights)."
  )

  if a.smoke:
    batch = c.batch_size
    smoke.make_smoke(c)
    c.learning_rate *= c.batch_size / batch  # the rate per image: the full one on 8 images blows up the eval loss
  return c
