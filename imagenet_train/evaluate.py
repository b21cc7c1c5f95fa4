"""Scores checkpoints under any registered protocol: one scorer for `evaluate`, ensembles and training's evaluation.

The scorer turns each eval image into a protocol's views (imagenet_train.protocols), runs the model on each, and
averages the softmax over the views, giving one probability vector per image; `results.statistics` turns those into
what the papers report. Dense evaluation needs a model that scores images of any size: VGG holds its fully connected
head as convolutions, global-average-pooled networks are convolutional up to the classifier, which commutes with the
average, and OverFeat takes the spatial maximum of its class-score map; networks whose fully connected layers read a
fixed-size map (AlexNet, ZFNet) are refused.

Each process scores its own part of the split on its own devices, and the per-image probabilities are gathered on
every process. An ensemble averages its members' probabilities (VGG, GoogLeNet and ResNet averaged softmax outputs).
"""

import collections
import copy
import dataclasses
import functools
import json
import os

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from imagenet_train import checkpoint as checkpoint_lib
from imagenet_train import protocols, results, sharding, write_errors
from imagenet_train import state as state_lib
from imagenet_train.config import schema
from imagenet_train.errors import UserError
from imagenet_train.step import model_input


@dataclasses.dataclass
class Scores:
  """Per-image softmax probabilities averaged over a protocol's views, with the labels."""

  probabilities: np.ndarray  # [images, classes]
  labels: np.ndarray  # [images]
  views: int


def _check_any_size(setup: state_lib.Setup) -> None:
  """Refuses dense evaluation of a model that cannot score whole images of other sizes."""
  e = setup.config.evaluation
  side = max(e.multiple, min(e.scales))
  channels = setup.info.image_shape[-1]
  variables = {"params": setup.abstract_state.params, "batch_stats": setup.abstract_state.batch_stats}
  model = setup.config.model
  for height, width in ((side, side + 32), (side + 64, side)):
    try:
      out = jax.eval_shape(
        functools.partial(setup.model.apply, train=False),
        variables,
        jax.ShapeDtypeStruct((1, height, width, channels), jnp.float32),
      )
    except (ValueError, TypeError, flax.errors.FlaxError) as error:
      reason = str(error).splitlines()[0].split(" (https://")[0]
      raise UserError(
        f"model {model!r} cannot run dense evaluation: it cannot score a {height}x{width} "
        f"image ({reason}); its fully connected layers read a fixed-size map. Use --protocol=center, "
        "10crop, multicrop or 144crop"
      ) from None
    if out.shape != (1, setup.info.num_classes):
      raise UserError(
        f"model {model!r} cannot run dense evaluation: a {height}x{width} image gives "
        f"scores of shape {out.shape}, not one score per class. Use --protocol=center or 10crop"
      )


def _gather_params(state: state_lib.TrainState, mesh) -> dict:
  """The parameters and statistics, whole, replicated over this process's devices."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  if jax.process_count() > 1:
    variables = multihost_utils.process_allgather(variables, tiled=True)
  return jax.device_put(jax.device_get(variables), NamedSharding(mesh, PartitionSpec()))


def _probabilities_fn(setup: state_lib.Setup, mesh, flip: bool):
  """Jitted: images [batch, views, height, width, channels] -> softmax averaged over the views
  (and the mirrors, when `flip`), [batch, classes]."""
  dtype = state_lib.compute_dtype(setup.config)

  def probabilities(variables, images):
    batch, views = images.shape[:2]
    x = images.reshape(batch * views, *images.shape[2:])
    if flip:
      x = jnp.concatenate([x, x[:, :, ::-1]])
    logits = setup.model.apply(variables, model_input(x, dtype, setup.info.device_normalize), train=False)
    p = jax.nn.softmax(logits.astype(jnp.float32))
    if flip:
      p = p.reshape(2, batch * views, -1).mean(0)
    return p.reshape(batch, views, -1).mean(1)

  data = sharding.batch_sharding(mesh)
  return jax.jit(probabilities, in_shardings=(NamedSharding(mesh, PartitionSpec()), data), out_shardings=data)


def _batches_of(examples, batch_size: int):
  """Groups single examples of varying shapes into batches of one shape each, padded at the end;
  yields (images [batch, 1, h, w, c], labels, mask, indices in the split's order)."""
  buckets: dict[tuple, list] = {}

  def emit(items):
    images = np.stack([item["image"] for item in items])[:, None]
    labels = np.array([item["label"] for item in items])
    indices = np.array([item["index"] for item in items], np.int64)
    mask = np.ones(len(items), bool)
    pad = batch_size - len(items)
    if pad:
      images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
      labels = np.concatenate([labels, np.zeros((pad, *labels.shape[1:]), labels.dtype)])
      indices, mask = np.pad(indices, (0, pad)), np.pad(mask, (0, pad))
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


def _lagged(items, depth: int = 1):
  """`items` `depth` behind the producer, so that the device computes a batch while the host reads the last one."""
  queue = collections.deque()
  for item in items:
    queue.append(item)
    if len(queue) > depth:
      yield queue.popleft()
  yield from queue


class Scorer:
  """Scores states of one setup under one protocol, compiling once for all of them."""

  def __init__(self, setup: state_lib.Setup, protocol: str):
    self.setup, self.protocol = setup, protocols.get(protocol)
    if self.protocol.whole_images:
      _check_any_size(setup)
    self.mesh = sharding.create_mesh(jax.local_devices(), 1)
    self.flip = self.protocol.whole_images and setup.config.evaluation.flip
    self.probabilities_fn = _probabilities_fn(setup, self.mesh, self.flip)
    # Placed explicitly: with several processes, jit takes no host array for a sharded argument.
    self.images_sharding = sharding.batch_sharding(self.mesh)
    self._views: dict[str, int] = {}  # per spec, the views it stacks per image
    self.specs = protocols.specs(setup.config, protocol)

  def _batches(self, spec: str):
    from imagenet_train.data import pipeline

    c, devices = self.setup.config, self.mesh.devices.size
    data = copy.deepcopy(c.data)
    data.pp_eval = spec
    where = dict(process_index=jax.process_index(), process_count=jax.process_count())
    # This process's share of eval_batch_size views, in whole images per device.
    views_budget = c.eval_batch_size * devices // jax.device_count()
    if self.protocol.whole_images:  # whole images vary in shape: batches of one shape each, smaller
      batch_size = max(1, views_budget // 8 // devices) * devices
      return _batches_of(pipeline.eval_examples(self.setup.builder, data, **where), batch_size)
    if spec not in self._views:  # reads an image: once per spec, not at every evaluation of a training run
      self._views[spec] = pipeline.views_per_example(self.setup.builder, data)
    batch_size = max(1, views_budget // self._views[spec] // devices) * devices
    return _fixed_size_batches(pipeline.eval_batches(self.setup.builder, data, local_batch_size=batch_size, **where))

  def _probabilities(self, variables, images: np.ndarray, spec: str):
    try:
      return self.probabilities_fn(variables, jax.device_put(images, self.images_sharding))
    except ValueError as error:  # models reject inputs they cannot read, naming the minimum
      height, width = images.shape[2:4]
      raise UserError(
        f"model {self.setup.config.model!r} cannot score the {height}x{width} views of the "
        f"{self.protocol.name} protocol ({spec}): {str(error).splitlines()[0]}; change the evaluation block's "
        "sizes (--config.evaluation.crop, .resize, .scales)"
      ) from None

  def score(self, state: state_lib.TrainState) -> Scores:
    """Every eval image's averaged probabilities, gathered from all processes."""
    c = self.setup.config
    variables = _gather_params(state, self.mesh)
    total, labels, views = None, None, 0
    for spec in self.specs:
      dispatched = (
        (self._probabilities(variables, images, spec), batch_labels, mask, indices, images.shape[1])
        for images, batch_labels, mask, indices in self._batches(spec)
      )
      pass_probabilities, pass_labels, pass_indices, pass_views = [], [], [], 0
      for probabilities, batch_labels, mask, indices, batch_views in _lagged(dispatched):
        pass_probabilities.append(np.asarray(probabilities)[mask])
        pass_labels.append(batch_labels[mask])
        pass_indices.append(indices[mask])
        pass_views = batch_views * (2 if self.flip else 1)
      if not pass_probabilities:
        raise UserError(f"the eval split {c.data.eval_split!r} has no images for process {jax.process_index()}")
      order = np.argsort(np.concatenate(pass_indices))  # dense batches come in bucket order
      p, y = np.concatenate(pass_probabilities)[order], np.concatenate(pass_labels)[order]
      y = y if y.ndim == 1 else y.argmax(-1)  # an `onehot` op's targets: their most probable class
      total = p if total is None else total + p
      labels = y
      views += pass_views
      logging.info("%s: %s over %d images done", self.protocol.name, spec, len(y))
    return _gather_scores(Scores(total / len(self.specs), labels, views))


def _gather_scores(scores: Scores) -> Scores:
  if jax.process_count() == 1:
    return scores
  counts = multihost_utils.process_allgather(np.array([len(scores.labels)]))
  most = int(counts.max())
  pad = most - len(scores.labels)
  probabilities = multihost_utils.process_allgather(np.pad(scores.probabilities, ((0, pad), (0, 0))))
  labels = multihost_utils.process_allgather(np.pad(scores.labels, (0, pad)))
  keep = [slice(0, int(n)) for n in counts.reshape(-1)]
  return Scores(
    np.concatenate([p[k] for p, k in zip(probabilities, keep)]),
    np.concatenate([y[k] for y, k in zip(labels, keep)]),
    scores.views,
  )


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
          axes.text(
            j,
            i,
            str(matrix[i, j]),
            ha="center",
            va="center",
            fontsize=7,
            color="black" if fractions[i, j] > 0.5 else "white",
          )
  figure.tight_layout()
  with epath.Path(path).open("wb") as f:
    figure.savefig(f, format="png", dpi=100)
  plt.close(figure)


def _class_names(setup: state_lib.Setup) -> list[str] | None:
  feature = setup.builder.info.features[setup.config.data.label_key] if setup.builder else None
  return list(feature.names) if feature is not None and hasattr(feature, "names") else None


def evaluate_state(
  setup: state_lib.Setup,
  state: state_lib.TrainState,
  scorer: Scorer,
  step: int,
  workdir: str | None = None,
  confusion: bool = False,
  resume_dir: str | None = None,
) -> results.Results:
  """Scores the state's raw parameters and each average it keeps with `scorer`; process 0 writes the results to
  `workdir` (when given), and a confusion-matrix PNG per parameter set beside them when `confusion`. A failed write
  is a UserError, naming the step a rerun resumes from when training passes its checkpoints as `resume_dir`."""
  names = _class_names(setup)
  protocol, model = scorer.protocol.name, setup.config.model
  statistics, pngs, views = {}, {}, 0
  for name, evaluated in state_lib.parameter_sets(state).items():
    scores = scorer.score(evaluated)
    views = scores.views
    statistics[name] = results.statistics(scores.probabilities, scores.labels)
    if confusion and workdir and jax.process_index() == 0:
      pngs[name] = f"confusion_{protocol}_step_{step}_{name}.png"
      path = os.path.join(workdir, pngs[name])
      with write_errors.reported(pngs[name], workdir, resume_dir, partial=path):
        write_confusion_png(
          confusion_matrix(scores), path, f"{model}, {protocol}, step {step} ({name} parameters)", names
        )
  evaluation = results.Results(
    protocol=protocol, model=model, step=step, views=views, parameters=statistics, class_names=names, confusion_png=pngs
  )
  if workdir and jax.process_index() == 0:
    path = os.path.join(workdir, evaluation.file_name)
    with write_errors.reported(evaluation.file_name, workdir, resume_dir, partial=path):
      results.write(workdir, evaluation)
  return evaluation


def restore_for_evaluation(config: ml_collections.ConfigDict, workdir: str, which: str = "latest"):
  """(setup, state, step) of the workdir's latest, best or given-step checkpoint."""
  setup = state_lib.prepare(config)
  if not epath.Path(checkpoint_lib.checkpoint_directory(workdir)).exists():  # evaluate creates nothing
    raise UserError(f"no checkpoint in {workdir}: train there first, or pass the --workdir of a trained run")
  checkpointer = checkpoint_lib.Checkpointer(workdir, keep=config.keep_checkpoints, enable_async=False)
  try:
    step = {"latest": checkpointer.latest_step, "best": checkpointer.best_step}.get(which, lambda: int(which))()
    steps = checkpointer.all_steps()
    if step is None or step not in steps:
      listed = f"pass --checkpoint=STEP for one of its steps: {', '.join(map(str, steps))}" if steps else "train first"
      named = f"checkpoint step {which}" if which.isdigit() else f"{which} checkpoint"
      raise UserError(f"no {named} in {checkpointer.directory}: {listed}")
    state = checkpoint_lib.restore_or_init(setup, checkpointer, step)
  finally:
    checkpointer.close()
  return setup, state, step


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, which: str, protocol: str) -> results.Results:
  """Scores a checkpoint's parameters, and each average it keeps, under `protocol`; process 0 writes the results
  and a confusion-matrix PNG per parameter set to the workdir."""
  protocols.get(protocol)  # an unknown protocol fails before anything is restored
  setup, state, step = restore_for_evaluation(config, workdir, which)
  return evaluate_state(setup, state, Scorer(setup, protocol), step, workdir, confusion=True)


def member_config(workdir: str, fallback: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config a run recorded in its workdir (config.json), with the data location of
  `fallback` (the --config given) when both read the same dataset; `fallback` itself for a run
  that recorded none."""
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    return fallback
  try:
    config = schema.recorded_config(json.loads(path.read_text()))
  except json.JSONDecodeError as error:
    raise UserError(f"{path} is not valid JSON ({error}): restore it, or remove it to use --config") from None
  if config.data.name == fallback.data.name:
    config.data.data_dir, config.data.manual_dir = fallback.data.data_dir, fallback.data.manual_dir
  return config


def evaluate_ensemble(
  config: ml_collections.ConfigDict, members: list[str], out_dir: str, which: str, protocol: str
) -> results.Results:
  """Averages the softmax of several runs' checkpoints, each under `protocol` with its own recipe
  (config.json in its workdir); process 0 writes the results and the confusion PNG to `out_dir`."""
  if protocol == protocols.ENSEMBLE:
    raise UserError(f"--ensemble_protocol={protocol} makes no sense: use one of {', '.join(protocols.names())}")
  protocols.get(protocol)
  if len(members) < 2:
    raise UserError(f"an ensemble needs at least two workdirs in --ensemble, got {len(members)}")
  total, labels, each = None, None, []
  for workdir in members:
    member = member_config(workdir, config)
    setup, state, step = restore_for_evaluation(member, workdir, which)
    scores = Scorer(setup, protocol).score(state)
    classes = scores.probabilities.shape[1]
    if total is not None and classes != total.shape[1]:
      raise UserError(
        f"ensemble members predict different numbers of classes: {members[0]} has {total.shape[1]}, "
        f"{workdir} has {classes}: ensemble runs trained on the same classes"
      )
    if labels is not None and not np.array_equal(labels, scores.labels):
      raise UserError(
        f"ensemble members were evaluated on different images: {members[0]} and {workdir} read "
        "different eval splits; give every member the same dataset and eval_split"
      )
    total = scores.probabilities if total is None else total + scores.probabilities
    labels = scores.labels
    each.append(results.Member(workdir, member.model, step, results.statistics(scores.probabilities, labels)))
  ensemble = Scores(total / len(members), labels, 0)
  png = f"confusion_{protocols.ENSEMBLE}_{protocol}.png"
  evaluation = results.Results(
    protocol=protocols.ENSEMBLE,
    model="+".join(dict.fromkeys(m.model for m in each)),
    step=None,
    views=0,
    parameters={results.RAW: results.statistics(ensemble.probabilities, labels)},
    confusion_png={results.RAW: png},
    member_protocol=protocol,
    members=tuple(each),
  )
  if jax.process_index() == 0:
    epath.Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_confusion_png(
      confusion_matrix(ensemble), os.path.join(out_dir, png), f"ensemble of {len(members)}, {protocol}"
    )
    results.write(out_dir, evaluation)
  return evaluation
