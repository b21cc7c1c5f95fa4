"""The ILSVRC papers' evaluation protocols, ensembles of checkpoints, and the statistics they report.

Every protocol turns each eval image into views, runs the model on each, and averages the
softmax over the views, giving one probability vector per image:

- center: the config's own `data.pp_eval` (one view).
- 10crop: the four corner and the center crops and their mirrors (Krizhevsky et al. 2012); with
  `evaluation.square` of the central square first, as AlexNet and ZFNet did.
- multicrop: a 5x5 grid of crops with mirrors at each scale, 150 views (Simonyan and Zisserman 2014).
- 144crop: GoogLeNet's 4 scales x 3 squares x 6 crops x 2 mirrors (Szegedy et al. 2014).
- dense: the whole image at each shorter side Q in `evaluation.scales`, through the network as a
  fully convolutional one: the class-score map is averaged over space, then the softmax over
  the image and its mirror and over the scales (Simonyan and Zisserman; He et al. 2015). A
  model must score images of any size for this: VGG holds its fully connected head as
  convolutions, and global-average-pooled networks are convolutional up to the classifier,
  which commutes with the average. Networks whose fully connected layers read a fixed-size map
  (AlexNet, ZFNet, OverFeat as written) are refused.

Each process scores its own part of the split on its own devices, and the per-image
probabilities are gathered on every process. An ensemble averages its members' probabilities
(VGG, GoogLeNet and ResNet averaged softmax outputs).
"""

import copy
import dataclasses
import functools
import json
import os

import flax
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec

from imagenet_train import sharding, train
from imagenet_train.defaults import PROTOCOLS
from imagenet_train.errors import UserError

ENSEMBLE = "ensemble"
# Ops that change values, not geometry: a protocol applies pp_eval's trailing ones to its views.
_VALUE_OPS = ("normalize", "subtract_mean", "subtract_mean_image", "onehot")


@dataclasses.dataclass
class Scores:
  """Per-image softmax probabilities averaged over a protocol's views, with the labels."""
  probabilities: np.ndarray  # [images, classes]
  labels: np.ndarray  # [images]
  views: int


def check_protocol(protocol: str) -> None:
  if protocol not in PROTOCOLS + (ENSEMBLE,):
    raise UserError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS + (ENSEMBLE,))} in --protocol")


def _op_names(spec: str) -> list[str]:
  return [part.split("(")[0].strip() for part in spec.split("|")]


def protocol_specs(config: ml_collections.ConfigDict, protocol: str) -> list[str]:
  """The preprocessing spec of each pass `protocol` makes over the eval split: one, or one per
  scale for dense. Views are stacked in front of each image's height, width and channels."""
  check_protocol(protocol)
  pp_eval = config.data.pp_eval
  if protocol == "center":
    return [pp_eval]
  parts = pp_eval.split("|")
  names = _op_names(pp_eval)
  decode = parts[0] if names[0] == "decode" else "decode(3)"
  first_value = len(names)
  while first_value > 1 and names[first_value - 1] in _VALUE_OPS:
    first_value -= 1
  values = parts[first_value:]
  e = config.evaluation
  if protocol == "dense":
    geometries = [f"resize_small({scale}, multiple={e.multiple})" for scale in e.scales]
  elif protocol == "10crop":
    square = f"|center_crop({e.resize})" if e.square else ""
    geometries = [f"resize_small({e.resize}){square}|ten_crop({e.crop})"]
  elif protocol == "multicrop":
    geometries = [f"vgg_multi_crop({e.crop}, scales={tuple(e.scales)})"]
  else:
    geometries = [f"googlenet_crops({e.crop}, scales={tuple(e.googlenet_scales)})"]
  return ["|".join([decode, geometry, *values]) for geometry in geometries]


def _check_any_size(setup: train.Setup, config: ml_collections.ConfigDict) -> None:
  """Refuses dense evaluation of a model that cannot score whole images of other sizes."""
  side = max(config.evaluation.multiple, min(config.evaluation.scales))
  channels = setup.info.image_shape[-1]
  variables = {"params": setup.abstract_state.params, "batch_stats": setup.abstract_state.batch_stats}
  for height, width in ((side, side + 32), (side + 64, side)):
    try:
      out = jax.eval_shape(functools.partial(setup.model.apply, train=False), variables,
                           jax.ShapeDtypeStruct((1, height, width, channels), jnp.float32))
    except (ValueError, TypeError, flax.errors.FlaxError) as error:
      reason = str(error).splitlines()[0].split(' (https://')[0]
      raise UserError(f"model {config.model!r} cannot run dense evaluation: it cannot score a {height}x{width} "
                      f"image ({reason}); its fully connected layers read a fixed-size map. Use --protocol=center, "
                      "10crop, multicrop or 144crop") from None
    if out.shape != (1, setup.info.num_classes):
      raise UserError(f"model {config.model!r} cannot run dense evaluation: a {height}x{width} image gives "
                      f"scores of shape {out.shape}, not one score per class. Use --protocol=center or 10crop")


def _gather_params(state: train.TrainState, mesh) -> dict:
  """The parameters and statistics, whole, replicated over this process's devices."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  if jax.process_count() > 1:
    variables = multihost_utils.process_allgather(variables, tiled=True)
  return jax.device_put(jax.device_get(variables), NamedSharding(mesh, PartitionSpec()))


def _probabilities_fn(setup: train.Setup, mesh, flip: bool):
  """Jitted: images [batch, views, height, width, channels] -> softmax averaged over the views
  (and the mirrors, when `flip`), [batch, classes]."""
  dtype = train.compute_dtype(setup.config)

  def probabilities(variables, images):
    batch, views = images.shape[:2]
    x = images.reshape(batch * views, *images.shape[2:])
    if flip:
      x = jnp.concatenate([x, x[:, :, ::-1]])
    logits = setup.model.apply(variables, train.model_input(x, dtype, setup.info.device_normalize), train=False)
    p = jax.nn.softmax(logits.astype(jnp.float32))
    if flip:
      p = p.reshape(2, batch * views, -1).mean(0)
    return p.reshape(batch, views, -1).mean(1)

  data = NamedSharding(mesh, PartitionSpec(sharding.DATA_AXIS))
  return jax.jit(probabilities, in_shardings=(NamedSharding(mesh, PartitionSpec()), data), out_shardings=data)


def _batches_of(examples, batch_size: int):
  """Groups single examples of varying shapes into batches of one shape each, padded at the end;
  yields (images [batch, 1, h, w, c], labels, mask, indices in the split's order)."""
  buckets: dict[tuple, list] = {}

  def emit(items):
    images = np.stack([item["image"] for item in items])[:, None]
    labels = np.array([item["label"] for item in items], np.int32)
    indices = np.array([item["index"] for item in items], np.int64)
    mask = np.ones(len(items), bool)
    pad = batch_size - len(items)
    if pad:
      images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
      labels, indices, mask = np.pad(labels, (0, pad)), np.pad(indices, (0, pad)), np.pad(mask, (0, pad))
    return images, labels, mask, indices

  for example in examples:
    bucket = buckets.setdefault(example["image"].shape, [])
    bucket.append(example)
    if len(bucket) == batch_size:
      yield emit(bucket)
      bucket.clear()
  for bucket in buckets.values():
    if bucket:
      yield emit(bucket)


def _fixed_size_batches(batches):
  """The eval pipeline's padded batches as (images [batch, views, h, w, c], labels, mask, indices)."""
  seen = 0
  for batch in batches:
    images = batch["image"] if batch["image"].ndim == 5 else batch["image"][:, None]
    indices = seen + np.cumsum(batch["mask"]) - 1
    seen += int(batch["mask"].sum())
    yield images, batch["label"], batch["mask"], indices


def score(setup: train.Setup, state: train.TrainState, protocol: str) -> Scores:
  """Every eval image's averaged probabilities under `protocol`, gathered from all processes."""
  from imagenet_train.data import pipeline

  c = setup.config
  mesh = sharding.create_mesh(jax.local_devices(), 1)
  devices = mesh.devices.size
  if protocol == "dense":
    _check_any_size(setup, c)
  variables = _gather_params(state, mesh)
  flip = protocol == "dense" and c.evaluation.flip
  probabilities_fn = _probabilities_fn(setup, mesh, flip)
  specs = protocol_specs(c, protocol)
  where = dict(process_index=jax.process_index(), process_count=jax.process_count())
  total, labels, views = None, None, 0
  for spec in specs:
    data = copy.deepcopy(c.data)
    data.pp_eval = spec
    if protocol == "dense":  # whole images vary in shape: batches of one shape each, smaller
      batch_size = max(1, c.eval_batch_size // 8 // devices) * devices
      batches = _batches_of(pipeline.eval_examples(setup.builder, data, **where), batch_size)
    else:
      # A batch holds every view of its images: near eval_batch_size views in all.
      views_per_image = pipeline.views_per_example(setup.builder, data)
      batch_size = max(1, c.eval_batch_size // views_per_image // devices) * devices
      batches = _fixed_size_batches(pipeline.eval_batches(setup.builder, data, local_batch_size=batch_size, **where))
    pass_probabilities, pass_labels, pass_indices = [], [], []
    for images, batch_labels, mask, indices in batches:
      pass_probabilities.append(np.asarray(probabilities_fn(variables, images))[mask])
      pass_labels.append(batch_labels[mask])
      pass_indices.append(indices[mask])
      pass_views = images.shape[1] * (2 if flip else 1)
    if not pass_probabilities:
      raise UserError(f"the eval split {c.data.eval_split!r} has no images for process {jax.process_index()}")
    order = np.argsort(np.concatenate(pass_indices))  # dense batches come in bucket order
    p, y = np.concatenate(pass_probabilities)[order], np.concatenate(pass_labels)[order]
    total = p if total is None else total + p
    labels = y
    views += pass_views
    logging.info("%s: %s over %d images done", protocol, spec, len(y))
  return _gather_scores(Scores(total / len(specs), labels, views))


def _gather_scores(scores: Scores) -> Scores:
  if jax.process_count() == 1:
    return scores
  counts = multihost_utils.process_allgather(np.array([len(scores.labels)]))
  most = int(counts.max())
  pad = most - len(scores.labels)
  probabilities = multihost_utils.process_allgather(np.pad(scores.probabilities, ((0, pad), (0, 0))))
  labels = multihost_utils.process_allgather(np.pad(scores.labels, (0, pad)))
  keep = [slice(0, int(n)) for n in counts.reshape(-1)]
  return Scores(np.concatenate([p[k] for p, k in zip(probabilities, keep)]),
                np.concatenate([y[k] for y, k in zip(labels, keep)]), scores.views)


def statistics(scores: Scores) -> dict:
  """Top-1 and top-5 error (percent), log loss, and the accuracy of each class (None where a
  class has no image)."""
  p, y = scores.probabilities, scores.labels
  label_p = p[np.arange(len(y)), y]
  rank = (p > label_p[:, None]).sum(1)  # ties count in the label's favour, as in training
  correct = rank == 0
  classes = p.shape[1]
  per_class = np.bincount(y, weights=correct, minlength=classes) / np.maximum(np.bincount(y, minlength=classes), 1)
  present = np.bincount(y, minlength=classes) > 0
  return {"top1_error": 100.0 * (1 - correct.mean()), "top5_error": 100.0 * (1 - (rank < min(5, classes)).mean()),
          "log_loss": float(-np.log(np.maximum(label_p, 1e-12)).mean()), "num_examples": int(len(y)),
          "per_class_accuracy": [float(a) if seen else None for a, seen in zip(per_class, present)]}


def confusion_matrix(scores: Scores) -> np.ndarray:
  """Counts [true class, predicted class]."""
  classes = scores.probabilities.shape[1]
  predicted = scores.probabilities.argmax(1)
  return np.bincount(scores.labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def write_confusion_png(matrix: np.ndarray, path: str, title: str, class_names=None) -> None:
  """The confusion matrix, rows normalised to the fraction of each true class, as a PNG."""
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  classes = matrix.shape[0]
  fractions = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
  size = 6 if classes <= 20 else 10
  figure, axes = plt.subplots(figsize=(size + 1.5, size))
  image = axes.imshow(fractions, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
  figure.colorbar(image, ax=axes, label="fraction of the true class")
  axes.set_xlabel("predicted class")
  axes.set_ylabel("true class")
  axes.set_title(title)
  if classes <= 20:
    names = class_names or [str(i) for i in range(classes)]
    axes.set_xticks(range(classes), names, rotation=90)
    axes.set_yticks(range(classes), names)
    for i in range(classes):
      for j in range(classes):
        if matrix[i, j]:
          axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="black" if fractions[i, j] > 0.5 else "white")
  figure.tight_layout()
  with epath.Path(path).open("wb") as f:
    figure.savefig(f, format="png", dpi=100)
  plt.close(figure)


def _class_names(setup: train.Setup) -> list[str] | None:
  feature = setup.builder.info.features[setup.config.data.label_key] if setup.builder else None
  return list(feature.names) if feature is not None and hasattr(feature, "names") else None


def evaluate_protocol(config: ml_collections.ConfigDict, workdir: str, which: str, protocol: str) -> dict:
  """Scores a checkpoint's parameters, and each average it keeps, under `protocol`; process 0
  writes eval_<protocol>_step_<N>.json and a confusion-matrix PNG per parameter set."""
  check_protocol(protocol)
  setup, state, step = train.restore_for_evaluation(config, workdir, which)
  names = _class_names(setup)
  states = {"raw": state, **{name: train.with_average(state, name) for name in state.averages}}
  results, per_class, pngs, views = {}, {}, {}, 0
  for name, evaluated in states.items():
    scores = score(setup, evaluated, protocol)
    views = scores.views
    stats = statistics(scores)
    per_class[name] = stats.pop("per_class_accuracy")
    results[name] = stats
    if jax.process_index() == 0:
      pngs[name] = f"confusion_{protocol}_step_{step}_{name}.png"
      write_confusion_png(confusion_matrix(scores), os.path.join(workdir, pngs[name]),
                          f"{config.model}, {protocol}, step {step} ({name} parameters)", names)
  report = {"protocol": protocol, "step": step, "model": config.model, "views": views,
            "num_examples": results["raw"]["num_examples"], "results": results, "per_class_accuracy": per_class,
            "confusion_png": pngs, "class_names": names}
  if jax.process_index() == 0:
    (epath.Path(workdir) / f"eval_{protocol}_step_{step}.json").write_text(json.dumps(report, indent=1))
  return report


def member_config(workdir: str, fallback: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config a run recorded in its workdir (config.json), with the data location of
  `fallback` (the --config given) when both read the same dataset; `fallback` itself for a run
  that recorded none."""
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    return fallback
  try:
    config = ml_collections.ConfigDict(json.loads(path.read_text()))
  except json.JSONDecodeError as error:
    raise UserError(f"{path} is not valid JSON ({error}): restore it, or remove it to use --config") from None
  if config.data.name == fallback.data.name:
    config.data.data_dir, config.data.manual_dir = fallback.data.data_dir, fallback.data.manual_dir
  return config


def evaluate_ensemble(config: ml_collections.ConfigDict, members: list[str], out_dir: str, which: str,
                      protocol: str) -> dict:
  """Averages the softmax of several runs' checkpoints, each under `protocol` with its own recipe
  (config.json in its workdir); process 0 writes ensemble_<protocol>.json and the confusion PNG to `out_dir`."""
  check_protocol(protocol)
  if protocol == ENSEMBLE:
    raise UserError("--ensemble_protocol=ensemble makes no sense: use center, 10crop, dense, multicrop or 144crop")
  if len(members) < 2:
    raise UserError(f"an ensemble needs at least two workdirs in --ensemble, got {len(members)}")
  total, labels, each = None, None, []
  for workdir in members:
    member = member_config(workdir, config)
    setup, state, step = train.restore_for_evaluation(member, workdir, which)
    scores = score(setup, state, protocol)
    classes = scores.probabilities.shape[1]
    if total is not None and classes != total.shape[1]:
      raise UserError(f"ensemble members predict different numbers of classes: {members[0]} has {total.shape[1]}, "
                      f"{workdir} has {classes}: ensemble runs trained on the same classes")
    if labels is not None and not np.array_equal(labels, scores.labels):
      raise UserError(f"ensemble members were evaluated on different images: {members[0]} and {workdir} read "
                      "different eval splits; give every member the same dataset and eval_split")
    total = scores.probabilities if total is None else total + scores.probabilities
    labels = scores.labels
    each.append({"workdir": workdir, "model": member.model, "step": step, **statistics(scores)})
    each[-1].pop("per_class_accuracy")
  ensemble = Scores(total / len(members), labels, 0)
  stats = statistics(ensemble)
  per_class = stats.pop("per_class_accuracy")
  report = {"protocol": ENSEMBLE, "member_protocol": protocol, "members": members, "member_results": each,
            "num_examples": stats["num_examples"], "results": {"raw": stats}, "per_class_accuracy": {"raw": per_class},
            "confusion_png": {"raw": f"confusion_ensemble_{protocol}.png"}}
  if jax.process_index() == 0:
    out = epath.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_confusion_png(confusion_matrix(ensemble), str(out / report["confusion_png"]["raw"]),
                        f"ensemble of {len(members)}, {protocol}")
    (out / f"ensemble_{protocol}.json").write_text(json.dumps(report, indent=1))
  return report
