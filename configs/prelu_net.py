"""PReLU-net model C (He, Zhang, Ren and Sun, "Delving Deep into Rectifiers: Surpassing Human-Level
Performance on ImageNet Classification", ICCV 2015, arXiv 1502.01852), the first reported result
below the 5.1% human estimate (4.94% top-5 on the test set, an ensemble of six models).

    python -m imagenet_train train --config=configs/prelu_net.py --workdir=workdirs/prelu_net_c
    python -m imagenet_train evaluate --config=configs/prelu_net.py --workdir=workdirs/prelu_net_c --protocol=10crop

The 22-layer model C of Table 3 (`prelu_net_c`: PReLU after every layer but the classifier,
a {7, 3, 2, 1} spatial pyramid before FC-4096, FC-4096 with dropout 0.5, the paper's
initialisation; see models/prelu_net.py for what of its layout was checked). The recipe, checked against the
paper's section 3 ("Implementation Details", Training): a 224x224 crop sampled at random from
the image resized to a shorter side s jittered in [256, 512] "from the beginning of training"
(unlike VGG), per-pixel mean subtracted, half the crops flipped, AlexNet's random colour
altering (PCA lighting here); trained from scratch with the section 2.2 initialisation, no
shallower model to start from; weight decay 0.0005, momentum 0.9, dropout 50% in the first two
fc layers, mini-batches of 128; learning rate 1e-2, 1e-3 and 1e-4, "switched when the error
plateaus"; "about 80" epochs. The PReLU slopes get momentum but no weight decay (section 2.1).

Reported errors, checked against the paper's tables (ImageNet 2012):
- Table 5, single model, 10-view testing (224 crops), val: C with PReLU 24.27 / 7.38. This is
  the paper block: the nearest protocol here is `10crop`.
- Table 6, single model, multi-scale dense testing, val: C with PReLU 21.59 / 5.71 (the notes).
  Section 3 (Testing): the conv layers run on the resized full image, every 14x14 window of the
  last map goes through the pyramid and the fc layers, the scores of all windows and of the
  flipped image are averaged, and scales are combined as in SPP-net. Table 4 gives model A's
  dense results at scales 256, 384 and 480 and their "multi-scale" combination, and its
  multi-scale rows are Table 6's model A rows, so those three scales are `evaluation.scales`.
- Table 7, six models, test: 4.94 top-5; section 4: "we combine six models including those in
  Table 6", only one of them of architecture C.

Where it departs from the paper, and why:
- Input values: the paper subtracted the per-pixel mean (a mean image); here the per-channel
  ImageNet mean on the same 0..255 scale, which needs no pass over the training set first
  (`subtract_mean_image(path.npy)` takes a precomputed mean image). The scale is the paper's:
  its 0.01 / 0.001 fc initialisation assumes inputs in about [-128, 128], and mean/std inputs
  would start the logits about 60 times smaller.
- The plateau schedule divides after two evaluations (one per epoch) without a 0.1-point gain
  in top-1; the paper does not say how it judged a plateau.
- Dense evaluation pools each scale's whole feature map through the pyramid; the paper pooled
  every 14x14 window of it and averaged the windows' scores.

Not given by the paper: the shorter side of the 10-view test (256 here, the side its small
model was trained and tested at, Table 2) and the ensemble's testing protocol (`dense` here,
as for the single-model results of Table 6).

Hardware and time, estimates: model C costs 53.5 G multiply-adds per image (Table 3: 5.30e10
operations), 3.5 times VGG-16; at torchvision VGG-16's measured rate on one H100 (4,600 images/s,
torch.compile, bf16) the step runs
at about 1,300 images/s, so 80 epochs take about 22 hours. The paper trained C on eight K40
GPUs in "about 3-4 weeks" (section 2.3).
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("",)

# Table 4's three test scales (shorter sides) of multi-scale dense testing.
_SCALES = (256, 384, 480)


def _pp(shorter: tuple[int, int], crop: int, eval_resize: int) -> tuple[str, str]:
  """Section 3's augmentation; inputs less the per-channel ImageNet mean on the 0..255 scale (the
  paper subtracts the per-pixel mean)."""
  return (
    f"decode(3)|random_resize_small({shorter[0]}, {shorter[1]})|random_crop({crop})|flip_lr|pca_lighting(0.1)|"
    f"{recipes.IMAGENET_SUBTRACT_MEAN}",
    f"decode(3)|resize_small({eval_resize})|center_crop({crop})|{recipes.IMAGENET_SUBTRACT_MEAN}",
  )


def get_config(arg=None):
  args = arguments.parse_arg(arg, smoke=False)
  c = schema.base_config()
  c.model = "prelu_net_c"
  c.data = recipes.imagenet_data(*_pp((256, 512), 224, 256))

  c.batch_size = 128
  c.num_epochs = 80.0
  c.learning_rate = 0.01
  c.optimizer.sgd.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.weight_decay_mode = "l2"
  c.optimizer.weight_decay_exclude = ("slope",)  # section 2.1: no weight decay when updating a_i
  c.schedule.name = "plateau"
  c.schedule.plateau.factor = 0.1
  c.schedule.plateau.min_factor = 1e-2  # 1e-2, 1e-3, 1e-4
  c.eval_every_epochs = 1.0
  c.evaluation.protocol = "10crop"
  c.evaluation.resize, c.evaluation.crop = 256, 224
  c.evaluation.scales = _SCALES

  p = c.paper
  p.reference = "He, Zhang, Ren and Sun, ICCV 2015 (arXiv 1502.01852)"
  p.table = "Table 5: single model, 10-view testing (224 crops), ImageNet 2012 val, model C with PReLU"
  p.protocol = "10crop"
  p.split = "val"
  p.top1, p.top5 = 24.27, 7.38
  p.ensemble_models = 6
  p.ensemble_protocol = "dense"
  p.ensemble_split = "test"
  p.ensemble_top5 = 4.94
  p.notes = (
    "Table 6, single model C, multi-scale dense testing (scales 256, 384, 480 as in Table 4), val: "
    "21.59/5.71. Ensemble: Table 7, six models of which one is model C; its testing protocol is not "
    "stated. Here: per-channel rather than per-pixel mean, whole-map pyramid pooling in dense "
    "testing."
  )

  if args.smoke:
    c.data.pp_train, c.data.pp_eval = _pp((64, 80), 64, 64)
    smoke.make_smoke(c, width_multiplier=1 / 16)
  return c
