"""ZFNet (Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", arXiv 1311.2901 /
ECCV 2014), the single-network basis of Clarifai's ILSVRC-2013 entry.

    python -m imagenet_train train --config=configs/zfnet.py:a --workdir=workdirs/zfnet_a
    python -m imagenet_train evaluate --config=configs/zfnet.py:a --workdir=workdirs/zfnet_a --protocol=10crop

`a` is the network of the paper's Fig. 3 (`zfnet`); `b` its variant with conv3, conv4 and conv5
512, 1024 and 512 wide (`zfnet` with wide=True). Recipe (the paper's section 3): images rescaled
to a shorter side of 256, the central 256x256 square kept and the per-pixel mean subtracted;
224x224 crops and mirrors; SGD with batch 128, learning rate 0.01 and momentum 0.9, the
learning rate annealed when the validation error plateaus; dropout 0.5 in FC6 and FC7;
weights from N(0, 0.01), biases 0; 70 epochs. Evaluation: the 10 crops of AlexNet (corners
and centre of the 256 square, and mirrors).

Where it departs from the paper, and why:
- Training crops are random 224 crops of the 256 square (Krizhevsky's augmentation); the paper
  used only the 10 fixed crops (corners and centre, mirrored), for which no op exists.
- Weight decay 5e-4 (Krizhevsky's): the paper names none.
- The paper renormalises conv filters whose RMS exceeds 0.1 back to 0.1; not applied.
- The mean subtracted is the per-channel ImageNet mean, not the per-pixel mean image.
- The annealing was by hand; here the plateau schedule divides by 10 after two evaluations
  (one per epoch) without a 0.1-point gain in top-1, at most three times.

Hardware and time, estimates: the paper took 12 days on one GTX 580 (from memory). ZFNet costs 1.2 G
multiply-adds per image, 1.6 times AlexNet, so an H100 still outruns JPEG decoding: at about
8,000 images/s on a 16-core host, 70 epochs take about 3 hours.
"""

from imagenet_train import defaults

VARIANTS = ("a", "b")
SMOKE = "a,smoke"

# The per-channel ImageNet mean in 0..255 pixel units, for recipes that subtract the mean only.


def _pp(square: int, crop: int) -> tuple[str, str]:
  # decode_and_center_crop(crop_fraction=1) is the paper's rescale-then-central-square, decoding only the square.
  square_op = f"decode_and_center_crop({square}, crop_fraction=1.0)"
  return (f"{square_op}|random_crop({crop})|flip_lr|{defaults.IMAGENET_SUBTRACT_MEAN}",
          f"{square_op}|center_crop({crop})|{defaults.IMAGENET_SUBTRACT_MEAN}")


def get_config(arg=None):
  args = defaults.parse_arg(arg, variant="a", smoke=False)
  defaults.check_choice("variant", args.variant, ("a", "b"))
  c = defaults.base_config()
  c.model = "zfnet"
  c.model_options.wide = args.variant == "b"
  c.data = defaults.imagenet_data(*_pp(256, 224))

  c.batch_size = 128
  c.num_epochs = 70.0
  c.learning_rate = 0.01
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.weight_decay_mode = "l2"
  c.schedule.name = "plateau"
  c.schedule.plateau.factor = 0.1
  c.schedule.plateau.min_factor = 1e-3
  c.eval_every_epochs = 1.0
  c.evaluation.protocol = "10crop"
  c.evaluation.resize, c.evaluation.crop, c.evaluation.square = 256, 224, True

  p = c.paper
  p.reference = "Zeiler and Fergus, ECCV 2014 (arXiv 1311.2901)"
  p.protocol = "10crop"
  p.split = "val"
  if args.variant == "a":
    p.table = "Table 2: 1 convnet as in Fig. 3, ILSVRC-2012 validation"
    p.top1, p.top5 = 38.4, 16.5
    p.notes = "Single-net (a) errors from memory of Table 2, not re-checked against the paper. "
  else:
    p.table = "Table 2: 1 convnet, layers 3, 4, 5 with 512, 1024, 512 maps, ILSVRC-2012 validation"
    p.top1, p.top5 = 37.5, 16.0
    p.notes = "Single net (b): 16.1% top-5 on the test set (checked against VGG's Table 7). "
  p.ensemble_models = 6
  p.ensemble_protocol = "10crop"
  p.ensemble_split = "val"
  p.ensemble_top1, p.ensemble_top5 = 36.0, 14.7
  p.notes += ("Ensemble: 6 convnets, (a) and (b), 14.8% top-5 on the test set. Clarifai's ILSVRC-2013 entry: "
              "11.7% test top-5. Here: random crops, weight decay 5e-4, no filter renormalisation.")

  if args.smoke:
    # 64: the last pooling leaves 1x1 maps, which the model repeats to FC6's 6x6.
    c.data.pp_train, c.data.pp_eval = _pp(72, 64)
    defaults.make_smoke(c)
  return c
