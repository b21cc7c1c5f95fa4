"""GoogLeNet (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, arXiv 1409.4842), the
ILSVRC-2014 classification winner.

    python -m imagenet_train train --config=configs/googlenet.py:paper --workdir=workdirs/googlenet
    python -m imagenet_train evaluate --config=configs/googlenet.py:paper --workdir=workdirs/googlenet \
        --protocol=144crop

`paper` (the default): the network of Table 1 (`googlenet`: LRN, 5x5 branches, the two
auxiliary classifiers weighted 0.3, dropout 0.4) and what the paper says of its training
(section 6): SGD with momentum 0.9, the learning rate decreased by 4% every 8 epochs, Polyak
averaging of the parameters for the final model; crops covering 8% to 100% of the image with
aspect ratios in [3/4, 4/3], mirrors, and Andrew Howard's photometric distortions (brightness,
contrast and colour). Evaluation is the paper's 144 crops: shorter sides 256, 288, 320 and
352, three squares each, the four corners, centre and whole square of each, and mirrors.

`torchvision`: torchvision's `googlenet` (BatchNorm, 3x3 "5x5" branches) with torchvision's
reference-script defaults (batch 256, learning rate 0.1, weight decay 1e-4, divided by 10
every 30 of 90 epochs, random-resized crops and flips), evaluated on the central 224 crop of
the image resized to 256. torchvision never trained it: its weights were ported from
TensorFlow, so the paper block holds their accuracy, not this recipe's. The inputs are scaled
to [-1, 1], what the ported weights expect (torchvision's `transform_input` converts its
normalisation to it), so that `import-weights` followed by `evaluate` reproduces torchvision's
figures.

    python -m imagenet_train train --config=configs/googlenet.py:torchvision --workdir=workdirs/googlenet_tv
    python -m imagenet_train evaluate --config=configs/googlenet.py:torchvision --workdir=workdirs/googlenet_tv \
        --protocol=center

Where `paper` departs from the paper, and why (the paper gives no base learning rate, batch
size, weight decay or length: DistBelief trained it asynchronously on CPUs):
- Those come from Caffe's bvlc_googlenet replication (from memory of its solver: learning
  rate 0.01 at batch 32, weight decay 2e-4, 10M iterations, that is 250 epochs, with the same
  4%-every-8-epochs decay). Batch 256 here, with the learning rate scaled linearly to 0.08
  and one warm-up epoch, as Goyal et al. (2017) do for larger batches.
- Polyak averaging starts at epoch 200: the paper does not say when; an average from the
  start would carry the random initialisation.
- Resizing always bilinear (the paper drew bilinear, area, nearest or cubic at random); the
  distortions are torchvision's ColorJitter with factors in [0.5, 1.5] (Howard's, from memory).
- Mean subtraction as bvlc_googlenet (104, 117, 123 in BGR): the model's Caffe initialisation
  expects 0-255 pixels.

Hardware and time, estimates: on one H100 torchvision's GoogLeNet step (no auxiliary heads)
runs at about 6,000 images/s (measured, torch.compile, bf16), so the 250 epochs of `paper` take about 15 hours
(`--config.num_epochs=60 --config.averaging.polyak_start_epochs=48` is bvlc_googlenet's quick
solver's length) and `torchvision`'s 90
epochs about 5.5 hours.
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("paper", "torchvision")
SMOKE = "paper,smoke"

RECIPES = ("paper", "torchvision")
# bvlc_googlenet's mean pixel (104, 117, 123 in Caffe's BGR order), in RGB.
_SUBTRACT_MEAN = "subtract_mean((123.0, 117.0, 104.0))"


def _paper_pp(crop: int, resize: int) -> tuple[str, str]:
  return (
    f"decode_and_inception_crop({crop})|flip_lr|color_jitter(0.5, 0.5, 0.5)|{_SUBTRACT_MEAN}",
    f"decode(3)|resize_small({resize})|center_crop({crop})|{_SUBTRACT_MEAN}",
  )


def get_config(arg=None):
  args = arguments.parse_arg(arg, recipe="paper", smoke=False)
  arguments.check_choice("recipe", args.recipe, RECIPES)
  c = schema.base_config()
  c.batch_size = 256
  c.optimizer.sgd.momentum = 0.9
  c.optimizer.weight_decay_mode = "l2"
  p = c.paper
  p.split = "val"
  if args.recipe == "paper":
    c.model = "googlenet"
    c.data = recipes.imagenet_data(*_paper_pp(224, 256))
    c.num_epochs = 250.0
    c.learning_rate = 0.08
    c.optimizer.weight_decay = 2e-4
    c.schedule.name = "exponential"
    c.schedule.decay_factor = 0.96
    c.schedule.decay_every_epochs = 8.0
    c.schedule.warmup_epochs = 1.0
    c.averaging.polyak = True
    c.averaging.polyak_start_epochs = 200.0
    c.evaluation.protocol = "144crop"
    c.evaluation.googlenet_scales = (256, 288, 320, 352)

    p.reference = "Szegedy et al., CVPR 2015 (arXiv 1409.4842)"
    p.table = "Table 3: 1 model, 144 crops, validation"
    p.protocol = "144crop"
    p.top5 = 7.89
    p.ensemble_models = 7
    p.ensemble_protocol = "144crop"
    p.ensemble_split = "val"
    p.ensemble_top5 = 6.67
    p.notes = (
      "The paper reports no top-1 error. 1 model: 1 crop 10.07, 10 crops 9.15 top-5 (Table 3). The 7-model "
      "144-crop ensemble also scored 6.67% on the test set (Table 2, first in ILSVRC 2014). Here: "
      "bvlc_googlenet's hyperparameters at batch 256, Polyak averaging over the last 50 epochs."
    )
  else:
    c.model = "googlenet_torchvision"
    recipes.torchvision_recipe(c, normalize=recipes.INCEPTION_NORMALIZE)

    p.reference = "torchvision's googlenet, weights ported from TensorFlow (not trained by torchvision)"
    p.table = "torchvision GoogLeNet_Weights.IMAGENET1K_V1: acc@1 69.778, acc@5 89.530"
    recipes.torchvision_errors(p, 69.778, 89.530)
    p.notes = (
      "torchvision's reported accuracies of the ported weights as errors; resize 256, central 224 crop. "
      "This recipe (the reference script's defaults) was never run by torchvision for GoogLeNet."
    )

  if args.smoke:
    # Five stride-2 stages: 32x32 inputs leave 1x1 maps before the average pooling.
    small = _paper_pp(32, 36) if args.recipe == "paper" else recipes.resnet_pp(32, 36, recipes.INCEPTION_NORMALIZE)
    c.data.pp_train, c.data.pp_eval = small
    c.averaging.polyak_start_epochs = 0.0  # so that the two steps exercise the averaging
    smoke.make_smoke(c, width_multiplier=1 / 8)
  return c
