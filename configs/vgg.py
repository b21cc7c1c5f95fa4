"""VGG (Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015, arXiv 1409.1556), second in ILSVRC-2014 classification: configurations A to E.

    python -m imagenet_train train --config=configs/vgg.py:d --workdir=workdirs/vgg_d
    python -m imagenet_train evaluate --config=configs/vgg.py:d --workdir=workdirs/vgg_d --protocol=dense

The argument is CONFIG[,SCALE]: CONFIG one of a, a_lrn, b, c, d, e (Table 1; d is VGG-16, e
VGG-19) and SCALE the training scale S, the shorter side crops are taken from: 256, 384, or
jitter (S drawn from [256, 512] per image). The default SCALE is each configuration's best in
the paper: jitter for c, d and e, 256 for a, a_lrn and b (the only one the paper trained them
at). Recipe (the paper's section 3.1): random 224x224 crops of the rescaled image, mirroring
and random RGB colour shift (PCA lighting); SGD with batch 256, momentum 0.9, weight decay
5e-4, dropout 0.5 on FC6 and FC7; learning rate 0.01 divided by 10 when the validation
accuracy stops improving, three times, 74 epochs (370K iterations). Evaluation is the paper's
dense one: the FC layers, held as convolutions, run over the whole image at test scales Q,
the class score maps are averaged over space, mirrors and scales. The paper block is the
Table 4 row of that S (Q = S-32, S, S+32, or 256, 384, 512 after jittering), or Table 3's
(Q = S) for A and A-LRN, which Table 4 lacks. `--protocol=multicrop` gives Table 5's other
method (150 crops over the same scales).

`CONFIG,torchvision` is torchvision's recipe for the same network (`vgg_d` etc.; a, b, d and e,
torchvision's vgg11, 13, 16 and 19): its reference script with `--lr 1e-2`, batch 256, weight
decay 1e-4, 90 epochs with the learning rate divided by 10 every 30, random-resized crops and
flips, ImageNet mean/std normalisation, evaluated on the central 224 crop of the image
resized to 256. `CONFIG,bn` is torchvision's vgg*_bn (BatchNorm after every convolution)
with the script's defaults (learning rate 0.1).

    python -m imagenet_train train --config=configs/vgg.py:d,torchvision --workdir=workdirs/vgg16_tv
    python -m imagenet_train evaluate --config=configs/vgg.py:d,torchvision --workdir=workdirs/vgg16_tv \
        --protocol=center

Where the paper recipe departs from the paper, and why:
- Initialisation: the paper trained A from N(0, 0.01) and started the deeper nets from A's
  first four convolutions and last three FC layers; the model here starts every convolution
  from torchvision's Kaiming initialisation and trains from scratch, which the paper's final
  version notes works as well (Glorot et al.'s initialisation, from memory).
- Input values: the paper subtracted the mean RGB only; here the ImageNet mean/std
  normalisation, the unit scale Kaiming initialisation assumes (on 0-255 pixels the initial
  logits would be about 60 times larger).
- S = 384 and jittered S are trained from scratch; the paper fine-tuned them from the S = 256
  (and then S = 384) networks with a learning rate of 1e-3.
- The plateau schedule divides after two evaluations (one per epoch) without a 0.1-point gain
  in top-1 of the central crop.

Hardware and time, estimates: the paper took 2-3 weeks per network on four Titan Black GPUs
(from memory). One H100 runs torchvision's VGG-16 step at about 4,600 images/s (measured,
torch.compile, bf16); scaling by
multiply-adds, 74 epochs take about 3.5 hours for A (JPEG decoding at about 8,000 images/s
bounds it), 4.2 for B, 4.4 for C, 5.8 for D and 7.3 for E; torchvision's 90 epochs about 7
hours for D.
"""

from imagenet_train.config import arguments, recipes, schema, smoke
from imagenet_train.errors import UserError

VARIANTS = (
  "a",
  "a_lrn",
  "b",
  "c",
  "d",
  "e",
  "c,256",
  "c,384",
  "d,256",
  "d,384",
  "e,256",
  "e,384",
  "a,torchvision",
  "b,torchvision",
  "d,torchvision",
  "e,torchvision",
  "a,bn",
  "d,bn",
  "e,bn",
)
SMOKE = "d,smoke"

CONFIGS = ("a", "a_lrn", "b", "c", "d", "e")
# Per configuration and training scale S: where the paper reports it, its test scales Q, and
# its dense-evaluation top-1 and top-5 validation errors.
_PAPER = {
  ("a", "256"): ("Table 3: config A, S=256, Q=256", (256,), 29.6, 10.4),
  ("a_lrn", "256"): ("Table 3: config A-LRN, S=256, Q=256", (256,), 29.7, 10.5),
  ("b", "256"): ("Table 4: config B, S=256, Q={224,256,288}", (224, 256, 288), 28.2, 9.6),
  ("c", "256"): ("Table 4: config C, S=256, Q={224,256,288}", (224, 256, 288), 27.7, 9.2),
  ("c", "384"): ("Table 4: config C, S=384, Q={352,384,416}", (352, 384, 416), 27.8, 9.2),
  ("c", "jitter"): ("Table 4: config C, S=[256;512], Q={256,384,512}", (256, 384, 512), 26.3, 8.2),
  ("d", "256"): ("Table 4: config D, S=256, Q={224,256,288}", (224, 256, 288), 26.6, 8.6),
  ("d", "384"): ("Table 4: config D, S=384, Q={352,384,416}", (352, 384, 416), 26.5, 8.6),
  ("d", "jitter"): ("Table 4: config D, S=[256;512], Q={256,384,512}", (256, 384, 512), 24.8, 7.5),
  ("e", "256"): ("Table 4: config E, S=256, Q={224,256,288}", (224, 256, 288), 26.9, 8.7),
  ("e", "384"): ("Table 4: config E, S=384, Q={352,384,416}", (352, 384, 416), 26.7, 8.6),
  ("e", "jitter"): ("Table 4: config E, S=[256;512], Q={256,384,512}", (256, 384, 512), 24.8, 7.5),
}
# Table 5, multi-crop and dense evaluation together, for the jittered D and E.
_MULTI_CROP_AND_DENSE = {"d": (24.4, 7.2), "e": (24.4, 7.1)}
# torchvision's weights (acc@1, acc@5) by model: vgg11, 13, 16, 19 and their _bn.
_TORCHVISION = {
  "vgg_a": (69.020, 88.628),
  "vgg_b": (69.928, 89.246),
  "vgg_d": (71.592, 90.382),
  "vgg_e": (72.376, 90.876),
  "vgg_a_bn": (70.370, 89.810),
  "vgg_b_bn": (71.586, 90.374),
  "vgg_d_bn": (73.360, 91.516),
  "vgg_e_bn": (74.218, 91.842),
}
_TORCHVISION_NAMES = {"a": "vgg11", "b": "vgg13", "d": "vgg16", "e": "vgg19"}


def _paper_pp(shorter: tuple[int, int], crop: int, eval_resize: int) -> tuple[str, str]:
  """Training crops from images whose shorter side is drawn from `shorter` (a fixed S where both are equal)."""
  low, high = shorter
  rescale = f"resize_small({low})" if low == high else f"random_resize_small({low}, {high})"
  return (
    f"decode(3)|{rescale}|random_crop({crop})|flip_lr|pca_lighting(0.1)|{recipes.IMAGENET_NORMALIZE}",
    f"decode(3)|resize_small({eval_resize})|center_crop({crop})|{recipes.IMAGENET_NORMALIZE}",
  )


def get_config(arg=None):
  args = arguments.parse_arg(arg, config="d", scale="", torchvision=False, bn=False, smoke=False)
  arguments.check_choice("config", args.config, CONFIGS)
  torchvision = args.torchvision or args.bn
  c = schema.base_config()
  c.model = f"vgg_{args.config}" + ("_bn" if args.bn else "")
  c.batch_size = 256
  c.optimizer.sgd.momentum = 0.9
  c.optimizer.weight_decay_mode = "l2"
  p = c.paper
  p.split = "val"
  if not torchvision:
    scale = args.scale or ("jitter" if args.config in ("c", "d", "e") else "256")
    arguments.check_choice("scale", scale, [s for config, s in _PAPER if config == args.config])
    table, test_scales, top1, top5 = _PAPER[args.config, scale]
    c.data = recipes.imagenet_data(*_paper_pp((256, 512) if scale == "jitter" else (int(scale),) * 2, 224, 256))
    c.num_epochs = 74.0
    c.learning_rate = 0.01
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "plateau"
    c.schedule.plateau.factor = 0.1
    c.schedule.plateau.min_factor = 1e-3  # divided three times
    c.eval_every_epochs = 1.0
    c.evaluation.protocol = "dense"
    c.evaluation.scales = test_scales

    p.reference = "Simonyan and Zisserman, ICLR 2015 (arXiv 1409.1556)"
    p.table, p.protocol, p.top1, p.top5 = table, "dense", top1, top5
    p.notes = "Kaiming initialisation and mean/std inputs, from scratch at every S; plateau schedule."
    if scale == "jitter" and args.config in _MULTI_CROP_AND_DENSE:
      p.ensemble_models = 2
      p.ensemble_protocol = "multicrop"
      p.ensemble_split = "val"
      p.ensemble_top1, p.ensemble_top5 = 23.7, 6.8
      p.notes += (
        " Table 5, multi-crop and dense combined: {:.1f}/{:.1f}. Ensemble (Table 6): D and E, "
        "multi-crop and dense, 6.8% test top-5; the ILSVRC submission (7 nets) had 7.3%."
      ).format(*_MULTI_CROP_AND_DENSE[args.config])
  else:
    if args.scale:
      raise UserError(f"config argument scale={args.scale}: torchvision's recipe has no training scale to choose")
    arguments.check_choice("config", args.config, tuple(_TORCHVISION_NAMES))
    recipes.torchvision_recipe(c, learning_rate=0.1 if args.bn else 0.01)

    name = _TORCHVISION_NAMES[args.config] + ("_bn" if args.bn else "")
    acc1, acc5 = _TORCHVISION[c.model]
    p.reference = f"torchvision's {name}, reference script" + ("" if args.bn else " with --lr 1e-2")
    p.table = f"torchvision {name.upper()}_Weights.IMAGENET1K_V1: acc@1 {acc1}, acc@5 {acc5}"
    recipes.torchvision_errors(p, acc1, acc5)
    p.notes = "torchvision's reported accuracies as errors; resize 256, central 224 crop."

  if args.smoke:
    # VGG's 7x7 FC6 needs 224 inputs: the smoke run keeps them and narrows the network instead.
    if torchvision:
      c.data.pp_train, c.data.pp_eval = recipes.resnet_pp(224, 224)
    else:
      c.data.pp_train, c.data.pp_eval = _paper_pp((224, 256) if scale == "jitter" else (224, 224), 224, 224)
    smoke.make_smoke(c, width_multiplier=1 / 64)
  return c
