"""Evaluation results: one type, one file name pattern, one reader; and the names of every metric the project writes.

`evaluate` (any protocol, or an ensemble) and training's periodic evaluation write a `Results` with `write`; `report`
reads them back with `latest`. Errors are in percent, as the papers print them. Imports neither JAX nor TensorFlow.
"""

import dataclasses
import json

import numpy as np
from etils import epath

from imagenet_train.errors import UserError

# The parameters a checkpoint is evaluated with: as trained, and the averages training keeps.
RAW = "raw"
PARAMETER_SETS = (RAW, "ema", "polyak")

# TensorBoard scalars. Training's: the CLU collection's fields under TRAIN, and the loop's own.
TRAIN = "train"
TRAIN_LOSS = f"{TRAIN}/loss"
LEARNING_RATE = f"{TRAIN}/learning_rate"
IMAGES_PER_SECOND = f"{TRAIN}/images_per_second"
STEP_TIME_MS = f"{TRAIN}/step_time_ms"
# Evaluation's: each Statistics field under eval/ (raw parameters) or eval_<average>/.
SCALAR_FIELDS = ("top1_error", "top5_error", "log_loss")
# Orbax's per-checkpoint metric that picks the best checkpoint (higher is better): the raw parameters' top-1
# accuracy as a fraction, under the name checkpoints written before these results existed carry.
BEST_CHECKPOINT_METRIC = "eval/top1"


def scalar_key(parameters: str, field: str) -> str:
  """`eval/top1_error` for the raw parameters, `eval_ema/top1_error` for the EMA average, ..."""
  return f"eval/{field}" if parameters == RAW else f"eval_{parameters}/{field}"


@dataclasses.dataclass(frozen=True)
class Statistics:
  """What the papers report of one set of predictions, and the accuracy of each class (None: no image of it)."""

  top1_error: float
  top5_error: float
  log_loss: float
  num_examples: int
  per_class_accuracy: list

  @property
  def top1_accuracy(self) -> float:
    return 1.0 - self.top1_error / 100.0


def statistics(probabilities: np.ndarray, labels: np.ndarray) -> Statistics:
  """Top-1 and top-5 error, log loss and per-class accuracy of [images, classes] probabilities. Labels are class
  indices, or target distributions whose most probable class counts as the label; ties count in the label's
  favour."""
  p, y = probabilities, labels if labels.ndim == 1 else labels.argmax(-1)
  label_p = p[np.arange(len(y)), y]
  rank = (p > label_p[:, None]).sum(1)
  correct = rank == 0
  classes = p.shape[1]
  counts = np.bincount(y, minlength=classes)
  per_class = np.bincount(y, weights=correct, minlength=classes) / np.maximum(counts, 1)
  return Statistics(
    top1_error=float(100.0 * (1 - correct.mean())),
    top5_error=float(100.0 * (1 - (rank < min(5, classes)).mean())),
    log_loss=float(-np.log(np.maximum(label_p, 1e-12)).mean()),
    num_examples=int(len(y)),
    per_class_accuracy=[float(a) if seen else None for a, seen in zip(per_class, counts > 0)],
  )


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of an ensemble, scored on its own."""

  workdir: str
  model: str
  step: int
  statistics: Statistics


@dataclasses.dataclass(frozen=True)
class Results:
  """One evaluation: a checkpoint's parameter sets (or an ensemble's average) under one protocol."""

  protocol: str  # a protocols.names() entry, or protocols.ENSEMBLE
  model: str  # "+"-joined member models for an ensemble
  step: int | None  # None for an ensemble
  views: int  # per image
  parameters: dict  # parameter set (RAW, "ema", "polyak") -> Statistics
  class_names: list | None = None
  confusion_png: dict = dataclasses.field(default_factory=dict)  # parameter set -> file name beside the results
  member_protocol: str | None = None  # an ensemble's: each member's protocol
  members: tuple = ()  # an ensemble's Members

  @property
  def file_name(self) -> str:
    if self.members:
      return f"eval_{self.protocol}_{self.member_protocol}.json"
    return f"eval_{self.protocol}_step_{self.step}.json"

  def scalars(self) -> dict[str, float]:
    return {
      scalar_key(name, field): getattr(stats, field)
      for name, stats in self.parameters.items()
      for field in SCALAR_FIELDS
    }


def write(directory: str, results: Results) -> epath.Path:
  """Writes `results` to its file in `directory` (local or a bucket) and returns the path."""
  path = epath.Path(directory) / results.file_name
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(dataclasses.asdict(results), indent=1))
  return path


def read(path) -> Results:
  """The results in a file `write` wrote; a damaged or foreign file is a one-line error."""
  path = epath.Path(path)
  try:
    fields = json.loads(path.read_text())
    parameters = {name: Statistics(**stats) for name, stats in fields.pop("parameters").items()}
    members = tuple(Member(**{**m, "statistics": Statistics(**m["statistics"])}) for m in fields.pop("members"))
    return Results(parameters=parameters, members=members, **fields)
  except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
    raise UserError(
      f"{path} is not an evaluation result of this version ({type(error).__name__}: {error}): delete "
      "it and run its evaluation again"
    ) from None


def latest(workdir) -> list[Results]:
  """The workdir's results: for each protocol (and each ensemble's member protocol) the latest step's."""
  chosen: dict[tuple, Results] = {}
  for path in sorted(epath.Path(workdir).glob("eval_*.json")):
    results = read(path)
    key = (results.protocol, results.member_protocol)
    if key not in chosen or (results.step or 0) > (chosen[key].step or 0):
      chosen[key] = results
  return list(chosen.values())
