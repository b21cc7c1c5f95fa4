"""OverFeat (Sermanet, Eigen, Zhang, Mathieu, Fergus and LeCun, ICLR 2014, arXiv 1312.6229), NYU's
ILSVRC-2013 classification entry: the fast and the accurate model.

    python -m imagenet_train train --config=configs/overfeat.py:accurate --workdir=workdirs/overfeat_accurate
    python -m imagenet_train evaluate --config=configs/overfeat.py:accurate --workdir=workdirs/overfeat_accurate \
        --protocol=dense

`accurate` (`overfeat_accurate`, 221x221 input) and `fast` (`overfeat_fast`, 231x231). Recipe
(the paper's section 3.1): images downsampled to a shorter side of 256, random crops of the
input size and their mirrors, batches of 128; weights from N(0, 0.01); SGD with momentum 0.6
and L2 weight decay 1e-5; learning rate 5e-2, halved after epochs 30, 50, 60, 70 and 80;
dropout 0.5 on the two hidden FC layers. Evaluation is dense: the FC layers, held as
convolutions, slide over the whole image at several scales, and the class scores are averaged
over space, scales and mirrors.

Where it departs from the paper, and why:
- Length: the paper gives the schedule's boundaries but not the end; 90 epochs, ten after the
  last halving.
- The paper says nothing about mean subtraction; the per-channel ImageNet mean is subtracted,
  the input scale that N(0, 0.01) weights were used with by Krizhevsky et al.
- Dense evaluation averages the score maps of `evaluate --protocol=dense` at the shorter sides
  below. The paper's scales are fixed image sizes (the fast model's six: 245x245, 281x317,
  317x389, 389x461, 425x497 and 461x569, from memory); their shorter sides are used, and the
  first four for the accurate model, whose "4 scales" are not identified. The paper's finer
  stride (max pooling at 3x3 offsets, "fine stride") is not applied: this is its coarse stride.

Hardware and time, estimates: the accurate model costs 5.4 G multiply-adds per image, the fast
one 2.8 G; at VGG-16's measured rate on one H100 (anchors.md) the step would run at about
13,000 and 25,000 images/s, so JPEG decoding (about 8,000 images/s on a 16-core host) sets
the pace: about 4 hours for 90 epochs either way.
"""

from imagenet_train import defaults

VARIANTS = ("accurate", "fast")
SMOKE = "accurate,smoke"

INPUT_SIZE = {"accurate": 221, "fast": 231}
# Shorter sides of the paper's six test scales for the fast model (Table 5, from memory).
_SCALES = (245, 281, 317, 389, 425, 461)
# The per-channel ImageNet mean in 0..255 pixel units, for recipes that subtract the mean only.


def _pp(resize: int, crop: int) -> tuple[str, str]:
  return (f"decode(3)|resize_small({resize})|random_crop({crop})|flip_lr|{defaults.IMAGENET_SUBTRACT_MEAN}",
          f"decode(3)|resize_small({resize})|center_crop({crop})|{defaults.IMAGENET_SUBTRACT_MEAN}")


def get_config(arg=None):
  args = defaults.parse_arg(arg, model="accurate", smoke=False)
  defaults.check_choice("model", args.model, tuple(INPUT_SIZE))
  size = INPUT_SIZE[args.model]
  c = defaults.base_config()
  c.model = f"overfeat_{args.model}"
  c.data = defaults.imagenet_data(*_pp(256, size))

  c.batch_size = 128
  c.num_epochs = 90.0
  c.learning_rate = 5e-2
  c.optimizer.momentum = 0.6
  c.optimizer.weight_decay = 1e-5
  c.optimizer.weight_decay_mode = "l2"
  c.schedule.name = "steps"
  c.schedule.boundaries_epochs = (30, 50, 60, 70, 80)
  c.schedule.decay_factor = 0.5
  c.evaluation.protocol = "dense"
  c.evaluation.scales = _SCALES if args.model == "fast" else _SCALES[:4]
  c.evaluation.crop = size  # for the crop protocols, should one be asked for

  p = c.paper
  p.reference = "Sermanet et al., ICLR 2014 (arXiv 1312.6229)"
  p.protocol = "dense"
  p.split = "val"
  p.ensemble_models = 7
  p.ensemble_protocol = "dense"
  p.ensemble_split = "val"
  if args.model == "accurate":
    p.table = "Table 2: 1 accurate model, 4 scales, fine stride, ILSVRC-2012 validation"
    p.top1, p.top5 = 35.74, 14.18
    p.ensemble_top1, p.ensemble_top5 = 33.96, 13.24
    p.notes = ("Errors from memory of Table 2, consistent with VGG's Table 7 (35.7/14.2; 7 nets 34.0/13.2, and "
               "13.6% test top-5 after the competition, 14.2% in it). ")
  else:
    p.table = "Table 2: 1 fast model, scales 1-6, fine stride, ILSVRC-2012 validation"
    p.top1, p.top5 = 38.12, 16.27
    p.ensemble_top1, p.ensemble_top5 = 35.10, 13.86
    p.notes = "Errors from memory of Table 2 (1 scale, coarse stride: 39.28/17.12), not re-checked. "
  p.notes += "Here: coarse stride only, the scales' shorter sides, 90 epochs."

  if args.smoke:
    c.data.pp_train, c.data.pp_eval = _pp(size + 1, size)  # the native input is also the smallest
    defaults.make_smoke(c, width_multiplier=1 / 32)
  return c
