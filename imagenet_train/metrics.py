"""CLU metric collections for classification and the writers they go to.

`clu.metrics` is free of TensorFlow; CLU's writers are not, so they are imported only when a
writer is made, keeping the train step importable on machines without TensorFlow.
"""

import flax
import jax
import jax.numpy as jnp
from clu import metrics

from imagenet_train import write_errors
from imagenet_train.errors import UserError


@flax.struct.dataclass
class ClassificationMetrics(metrics.Collection):
  """Mean loss and top-1/top-5 accuracy over the examples whose mask is set."""

  loss: metrics.Average.from_output("loss")
  top1: metrics.Average.from_output("top1")
  top5: metrics.Average.from_output("top5")


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """1.0 where the label is among the k highest logits (ties broken toward the label's favour).
  A target distribution counts its most probable class as the label."""
  if labels.ndim == logits.ndim:
    labels = jnp.argmax(labels, axis=-1)
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  rank = jnp.sum(logits > label_logit, axis=-1)
  return (rank < k).astype(jnp.float32)


def classification_metrics(logits, labels, loss_per_example, mask=None) -> ClassificationMetrics:
  """One batch's metrics; inside jit over a global batch, the sums span every device."""
  logits = logits.astype(jnp.float32)
  return ClassificationMetrics.single_from_model_output(
    loss=loss_per_example,
    top1=topk_correct(logits, labels, 1),
    top5=topk_correct(logits, labels, min(5, logits.shape[-1])),
    mask=mask,
  )


def create_writer(workdir: str, resume_dir: str | None = None):
  """TensorBoard event files in `workdir` plus the console; process 0 writes, others only log. A failed write is a
  UserError naming the free space, and with `resume_dir` (the checkpoints) the step a rerun resumes from."""
  from clu import metric_writers

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0, asynchronous=True)
  return _ReportedWriter(writer, workdir, resume_dir)


class _ReportedWriter:
  """A CLU metric writer whose failed writes, in the call or in the background writes before it, are UserErrors.
  After one it does nothing: the run ends with it, and CLU and TensorFlow would raise it again at every call."""

  def __init__(self, writer, workdir: str, resume_dir: str | None):
    self._writer, self._workdir, self._resume_dir = writer, workdir, resume_dir
    self._failed = False

  def __getattr__(self, name):
    method = getattr(self._writer, name)
    if not callable(method):
      return method

    def reported(*args, **kwargs):
      if self._failed:
        return None
      try:
        with write_errors.reported("metrics", self._workdir, self._resume_dir):
          return method(*args, **kwargs)
      except UserError:
        self._failed = True
        raise

    return reported
