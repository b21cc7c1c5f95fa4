"""DenseNet-BC (Huang, Liu, van der Maaten and Weinberger, CVPR 2017) on ImageNet with the paper's recipe.

    python -m imagenet_train train --config=configs/densenet.py:121 --workdir=workdirs/densenet121
    python -m imagenet_train evaluate --config=configs/densenet.py:121 --workdir=workdirs/densenet121 --protocol=center
    python -m imagenet_train evaluate --config=configs/densenet.py:121 --workdir=workdirs/densenet121 --protocol=10crop

The argument is DEPTH: 121 (the default), 169, 201 or 264 (growth rate 32), or 161 (growth
rate 48). Not an ILSVRC entry, but the last architecture of the 2017 generation.

Recipe (the paper's, run with the authors' Torch code built on fb.resnet.torch): fb.resnet.torch's
augmentation (random-resized crops of 8-100% of the area, ColorJitter 0.4, AlexNet's PCA
lighting 0.1, flips, per-channel normalisation); SGD with Nesterov momentum 0.9 and no
dampening, batch 256, weight decay 1e-4 on every weight, learning rate 0.1 divided by 10 at
epochs 30 and 60 of 90. DenseNet-161 did not fit in memory at batch 256: batch 128 for 100
epochs, with a further division at epoch 90. The paper reports single center crops (224 of
256) and 10 crops; the config evaluates the single crop, `--protocol=10crop` the other.
Add `,smoke` for two steps of a narrow, one-layer-per-block DenseNet-121 on fake ILSVRC2012
data (`SMOKE`).

Hardware and time (estimates, not measurements): DenseNets are bound by memory traffic more
than by multiply-adds, so the estimate assumes 70% of the measured ResNet-50 rate per
multiply-add (5,000 images/s in bf16 on one H100 at 4.1 G): about 6, 8, 10 and 13 H100-hours
for 90 epochs of DenseNet-121, -169, -201 and -264, and about 19 for DenseNet-161's 100.

Departures from the paper: bf16 compute. The layers are rematerialised (the model's
memory-efficient form), which changes memory, not the arithmetic. torchvision's DenseNet
weights were ported from these Torch models, not trained with a torchvision recipe, so there
is no torchvision variant.
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("121", "169", "201", "264", "161")
SMOKE = "121,smoke"

# Table 3, validation errors in percent: (single-crop top-1, top-5, 10-crop top-1, top-5).
_TABLE3 = {
  121: (25.02, 7.71, 23.61, 6.66),
  169: (23.80, 6.85, 22.08, 5.92),
  201: (22.58, 6.34, 21.46, 5.54),
  264: (22.15, 6.12, 20.80, 5.29),
}
# torchvision's ported weights: (acc@1, acc@5), single center crop.
_TORCHVISION = {121: (74.434, 91.972), 161: (77.138, 93.560), 169: (75.600, 92.806), 201: (76.896, 93.370)}


def get_config(arg=None):
  a = arguments.parse_arg(arg, depth=121, smoke=False)
  arguments.check_choice("depth", a.depth, (121, 169, 201, 264, 161))
  c = schema.base_config()
  c.model = f"densenet{a.depth}"
  crop, resize = (32, 36) if a.smoke else (224, 256)
  # fb.resnet.torch's order: crop, color jitter, lighting, normalisation, flip; the flip commutes with the
  # normalisation, which comes last so that the accelerator can do it.
  c.data = recipes.imagenet_data(
    f"decode_and_inception_crop({crop})|color_jitter(0.4, 0.4, 0.4)|pca_lighting(0.1)|flip_lr|"
    f"{recipes.IMAGENET_NORMALIZE}",
    f"decode(3)|resize_small({resize})|center_crop({crop})|{recipes.IMAGENET_NORMALIZE}",
  )

  c.batch_size = 256
  c.learning_rate = 0.1
  c.optimizer.sgd.momentum = 0.9
  c.optimizer.sgd.nesterov = True
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_mode = "l2"
  c.num_epochs = 90.0
  c.schedule.name = "steps"
  c.schedule.boundaries_epochs = (30, 60)
  c.schedule.decay_factor = 0.1
  if a.depth == 161:
    c.batch_size, c.num_epochs = 128, 100.0
    c.schedule.boundaries_epochs = (30, 60, 90)
  c.evaluation.protocol = "center"
  c.evaluation.resize, c.evaluation.crop = 256, 224

  p = c.paper
  p.protocol, p.split = "center", "val"
  notes = []
  if a.depth == 161:
    p.reference = "liuzhuang13/DenseNet README (the authors' Torch models)"
    p.table = "ImageNet results, DenseNet-161 (k=48), single-crop top-1; not in the paper's Table 3"
    p.top1 = 22.2
    notes.append(
      "The README gives no top-5. DenseNet-161's schedule (batch 128, 100 epochs, divided at 90) is "
      "from memory of the paper's text, not checked."
    )
  else:
    p.reference = "Huang, Liu, van der Maaten and Weinberger, CVPR 2017 (arXiv 1608.06993)"
    p.table = f"Table 3, DenseNet-{a.depth} (k=32), single crop"
    p.top1, p.top5, ten_top1, ten_top5 = _TABLE3[a.depth]
    notes.append(f"10-crop (--protocol=10crop): {ten_top1} / {ten_top5}.")
  if a.depth in _TORCHVISION:
    acc1, acc5 = _TORCHVISION[a.depth]
    notes.append(
      f"torchvision's weights, ported from these Torch models: {round(100 - acc1, 3)} / "
      f"{round(100 - acc5, 3)} (single crop)."
    )
  p.notes = " ".join(notes)

  if a.smoke:
    smoke.make_smoke(c, width_multiplier=0.25, block_sizes=(1, 1, 1, 1))
  return c
