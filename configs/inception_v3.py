r"""Inception-v3 (Szegedy, Vanhoucke, Ioffe, Shlens and Wojna, CVPR 2016) with the paper's recipe.

    python -m imagenet_train train --config=configs/inception_v3.py --workdir=workdirs/inception_v3
    python -m imagenet_train evaluate --config=configs/inception_v3.py --workdir=workdirs/inception_v3 \
        --protocol=center

torchvision's Inception3 at 299x299: factorised convolutions, BatchNorm everywhere, one
auxiliary classifier on the 17x17 grid (weight 0.4 in the loss, TF-slim's and torchvision's).
Recipe (the paper's training methodology, and TF-slim's code where the paper is silent): RMSProp with decay 0.9 and
epsilon 1.0 (momentum 0.9, TF-slim's), learning rate decayed by 0.94 every 2 epochs, gradients
clipped at global norm 2.0, label smoothing 0.1, 100 epochs; evaluated with a running average
of the parameters, here an exponential moving average with decay 0.9999 (evaluate reports it
beside the raw parameters). Augmentation is TF-slim's inception_preprocessing: random crops
of 5-100% of the area with aspect 3/4-4/3 resized to 299, flips and colour distortions
(brightness, contrast, saturation, hue; the brightness is a factor here, TF's is an offset of
32/255), pixels scaled to [-1, 1]; evaluation on the central 87.5% of the image resized to 299.
Weight decay 4e-5 (TF-slim's), dropout 0.2 before the classifier (TF-slim's keep_prob 0.8;
torchvision's model uses 0.5).
Add `smoke` for two steps at the model's smallest input, 75x75, on fake ILSVRC2012 data.

Hardware and time (estimates, not measurements): at 5.7 G multiply-adds, the measured
ResNet-50 rate (5,000 images/s in bf16 on one H100 at 4.1 G) less a quarter for the many small
Inception convolutions gives about 2,700 images/s: 100 epochs (128 M images) in about 13
H100-hours, under 2 hours on 8 GPUs if the input pipeline keeps up (about one CPU core per
500 images/s).

Departures from the paper: it trained 50 replicas with 32 images each and learning rate
0.045; synchronous training at batch 256 uses 0.165 per 256 images, Google's own TPU
reference for this recipe (tensorflow/tpu inception_v3.py: 0.165 x batch / 256). Weight decay
reaches every parameter including BatchNorm's (TF-slim regularises the convolution weights
only, and its BatchNorm has no scale). bf16 compute. torchvision's Inception-v3 weights were
ported from TensorFlow, not trained with a torchvision recipe, so there is no torchvision
variant; their 22.706 / 6.550 (resize 342, crop 299) is in the paper block's notes.
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("",)
SMOKE = "smoke"


def get_config(arg=None):
  a = arguments.parse_arg(arg, smoke=False)
  c = schema.base_config()
  c.model = "inception_v3"
  c.model_options.aux_heads = True
  c.model_options.aux_loss_weight = 0.4
  c.model_options.dropout_rate = 0.2
  recipes.inception_recipe(c, size=75 if a.smoke else 299, epochs=100.0, grad_clip_norm=2.0)

  p = c.paper
  p.reference = "Szegedy, Vanhoucke, Ioffe, Shlens and Wojna, CVPR 2016 (arXiv 1512.00567)"
  p.table = "Table 3, Inception-v3 (BN-auxiliary), single crop"
  p.protocol, p.split = "center", "val"
  p.top1, p.top5 = 21.2, 5.6
  p.ensemble_models = 4
  p.ensemble_protocol = "144crop"
  p.ensemble_split = "val"
  p.ensemble_top1, p.ensemble_top5 = 17.2, 3.58
  p.notes = (
    "The single-crop 21.2 / 5.6 is from memory of the paper (the Inception-v4 paper repeats it), not "
    "checked. Checked: one model over 12 crops 19.47 / 4.48 and over 144 crops 18.77 / 4.2 "
    "(--protocol=144crop). torchvision's ported weights: 22.706 / 6.550."
  )

  if a.smoke:
    batch = c.batch_size
    smoke.make_smoke(c)
    c.learning_rate *= c.batch_size / batch  # the rate per image: the full one on 8 images blows up the eval loss
  return c
