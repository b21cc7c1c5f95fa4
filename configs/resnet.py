"""ResNet (He, Zhang, Ren and Sun, CVPR 2016), the ILSVRC 2015 winner: the paper's recipe, or torchvision's.

    python -m imagenet_train train --config=configs/resnet.py:50 --workdir=workdirs/resnet50
    python -m imagenet_train evaluate --config=configs/resnet.py:50 --workdir=workdirs/resnet50 --protocol=10crop
    python -m imagenet_train evaluate --config=configs/resnet.py:50 --workdir=workdirs/resnet50 --protocol=dense

The argument is DEPTH (18, 34, 50, 101 or 152; default 50), then VERSION:
- `v1` (default), the paper: the stride-2 downsampling on the first 1x1 convolution of a
  bottleneck (3.86 G multiply-adds for ResNet-50, the paper's Table 1); projection shortcuts
  where the shape changes (option B) for 50-152 and zero-padded identities (option A) for 18
  and 34, the networks of the paper's Table 2. Recipe (section 3.4): the shorter side drawn
  from [256, 480], a random 224 crop, flips and AlexNet's PCA lighting; SGD with momentum 0.9,
  batch 256, weight decay 1e-4 on every weight, learning rate 0.1 divided by 10 when the
  validation error plateaus, 600,000 iterations (120 epochs); 10-crop evaluation (Table 3),
  and the multi-scale fully convolutional protocol of Table 4 (`--protocol=dense`).
- `v1.5`: the same recipe with the stride on the 3x3 convolution (fb.resnet.torch,
  torchvision, NVIDIA: 4.09 G multiply-adds, about 0.5 points of top-1 better by NVIDIA's
  account); the paper block still holds the paper's v1 numbers.
- `torchvision`: torchvision's reference script (`torchrun --nproc_per_node=8 train.py
  --model resnet50`): v1.5 blocks with option B shortcuts at every depth, random-resized
  crops and flips, SGD 0.9, lr 0.1, batch 256, weight decay 1e-4, divided by 10 at epochs 30
  and 60 of 90, one center crop; compared with torchvision's IMAGENET1K_V1 weights.
Add `,smoke` for two steps of a narrow network on fake ILSVRC2012 data (`SMOKE` is ResNet-18).

Hardware and time (estimates, not measurements): the Flax example's ResNet-50 step runs at
about 5,000 images/s in bf16 on one H100 and torchvision's ResNet-152 at 46% of ResNet-50's
speed; scaling the rest by multiply-adds, the paper's 120 epochs (154 M images) take about 4,
8, 9, 15 and 19 H100-hours for depths 18 to 152 (torchvision's 90 epochs: three quarters of
that), a little over an hour for ResNet-50 on one 8-GPU node. The input pipeline has to keep
up: at roughly 500 images/s per CPU core (as measured on 2 cores), 40,000 images/s needs
about 80 cores.

Departures from the paper: inputs are normalised by ImageNet's per-channel mean and std (as
fb.resnet.torch, which reproduced the paper's numbers) rather than by subtracting the
per-pixel mean image, which would need a precomputed file (`subtract_mean_image`). The
plateau rule is the paper's words made exact: evaluate every epoch, divide by 10 after 5
evaluations without 0.1 points of top-1 gain, at most three times; the paper's curves show
the drops near epochs 30 and 60. bf16 compute.
"""

from imagenet_train.config import arguments, recipes, schema, smoke

VARIANTS = ("18", "34", "50", "101", "152", "50,v1.5", "18,torchvision", "50,torchvision", "152,torchvision")
SMOKE = "18,smoke"

DEPTHS = (18, 34, 50, 101, 152)
VERSIONS = ("v1", "v1.5", "torchvision")

# Validation errors in percent, (top-1, top-5): the paper's Table 3 (10-crop; ResNet-18 only in
# Table 2, top-1; ResNet-34 with option A shortcuts) and Table 4 (multi-scale dense, 34 with option B).
_TABLE3 = {18: (27.88, None), 34: (25.03, 7.76), 50: (22.85, 6.71), 101: (21.75, 6.05), 152: (21.43, 5.71)}
_TABLE4 = {34: (21.84, 5.71), 50: (20.74, 5.25), 101: (19.87, 4.60), 152: (19.38, 4.49)}
# torchvision's IMAGENET1K_V1 weights metadata: (acc@1, acc@5).
_TORCHVISION = {
  18: (69.758, 89.078),
  34: (73.314, 91.420),
  50: (76.130, 92.862),
  101: (77.374, 93.546),
  152: (78.312, 94.046),
}


def get_config(arg=None):
  a = arguments.parse_arg(arg, depth=50, version="v1", smoke=False)
  arguments.check_choice("depth", a.depth, DEPTHS)
  arguments.check_choice("version", a.version, VERSIONS)
  c = schema.base_config()
  c.model = f"resnet{a.depth}"
  c.model_options.stride_on = "1x1" if a.version == "v1" else "3x3"  # only bottlenecks have a 1x1 to stride
  c.model_options.shortcut = "A" if a.depth < 50 and a.version != "torchvision" else "B"
  crop, resize = (32, 36) if a.smoke else (224, 256)

  c.batch_size = 256
  c.learning_rate = 0.1
  c.optimizer.sgd.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_mode = "l2"
  p = c.paper
  if a.version == "torchvision":
    recipes.torchvision_recipe(c, crop=crop, resize=resize)
    p.reference = f"torchvision weights metadata (ResNet{a.depth}_Weights.IMAGENET1K_V1)"
    p.table = "acc@1 / acc@5 on ImageNet-1K val, shorter side 256, center 224 crop"
    recipes.torchvision_errors(p, *_TORCHVISION[a.depth])
    p.notes = "torchvision's reference script with its defaults; errors are 100 minus its accuracies."
  else:
    shortest, longest = (32, 60) if a.smoke else (256, 480)  # the range of the shorter side
    c.data = recipes.imagenet_data(
      f"decode(3)|random_resize_small({shortest}, {longest})|random_crop({crop})|flip_lr|pca_lighting(0.1)|"
      f"{recipes.IMAGENET_NORMALIZE}",
      recipes.resnet_pp(crop, resize)[1],
    )
    c.num_epochs = 120.0  # 600,000 iterations of 256
    c.schedule.name = "plateau"
    c.schedule.plateau.patience = 4
    c.schedule.plateau.factor = 0.1
    c.schedule.plateau.threshold = 1e-3
    c.schedule.plateau.min_factor = 1e-3
    c.eval_every_epochs = 1.0
    c.evaluation.protocol = "10crop"
    c.evaluation.resize, c.evaluation.crop = 256, 224
    c.evaluation.scales = (224, 256, 384, 480, 640)
    p.reference = "He, Zhang, Ren and Sun, CVPR 2016 (arXiv 1512.03385)"
    p.protocol = "10crop"
    p.split = "val"
    p.top1, p.top5 = _TABLE3[a.depth]
    if a.depth == 18:
      p.table = "Table 2, ResNet-18 (option A shortcuts), 10-crop top-1; no top-5 is reported"
    elif a.depth == 34:
      p.table = "Table 3, ResNet-34 A, 10-crop"
    else:
      p.table = f"Table 3, ResNet-{a.depth}, 10-crop"
    p.ensemble_models = 6
    p.ensemble_protocol = "dense"
    p.ensemble_split = "test"
    p.ensemble_top5 = 3.57
    notes = []
    if a.depth == 34:
      notes.append(
        "Table 3's ResNet-34 B gives 24.52 / 7.46 and C 24.19 / 7.40 (--config.model_options.shortcut=B or C)."
      )
    if a.depth in _TABLE4:
      dense = "ResNet-34 B" if a.depth == 34 else f"ResNet-{a.depth}"
      notes.append(
        f"Table 4, {dense}, multi-scale dense (--protocol=dense): {_TABLE4[a.depth][0]} / {_TABLE4[a.depth][1]}."
      )
    if a.version == "v1.5":
      notes.append(
        "The paper's numbers are for v1 striding; v1.5 is reported about 0.5 points of top-1 better (NVIDIA)."
      )
    notes.append("The ensemble is Table 5's ILSVRC 2015 entry: six models of different depths, 3.57% top-5 on test.")
    p.notes = " ".join(notes)

  if a.smoke:
    batch = c.batch_size
    smoke.make_smoke(c, width=8)
    c.learning_rate *= c.batch_size / batch  # the rate per image: the full one on 8 images blows up the eval loss
  return c
