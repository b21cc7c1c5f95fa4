"""CLU metric collections for classification and the writers they go to.

`clu.metrics` is free of TensorFlow; CLU's writers are not, so they are imported only when a
writer is made, keeping the train step importable on machines without TensorFlow.
"""

import flax
import jax
import jax.numpy as jnp
from clu import metrics


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


def create_writer(workdir: str):
  """TensorBoard event files in `workdir` plus the console; process 0 writes, others only log."""
  from clu import metric_writers

  return metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0, asynchronous=True)
