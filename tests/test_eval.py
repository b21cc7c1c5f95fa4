"""Evaluation covers every example exactly once, whatever the batch size, devices and hosts."""

import collections

import pytest

from imagenet_train import evaluate, protocols
from imagenet_train import state as state_lib
from imagenet_train.data import pipeline

from conftest import NUM_TEST


@pytest.mark.parametrize("eval_batch_size", [8, 48, 256])
def test_eval_counts_each_example_once(config, eval_batch_size):
  config.eval_batch_size = eval_batch_size
  setup = state_lib.prepare(config)
  scores = evaluate.Scorer(setup, protocols.CENTER).score(setup.initial_state())
  assert NUM_TEST % eval_batch_size != 0
  assert len(scores.labels) == scores.probabilities.shape[0] == NUM_TEST
  # The masked mean equals the plain mean over the real examples, computed here without padding.
  labels = []
  for host_batch in pipeline.eval_batches(
    setup.builder, config.data, local_batch_size=eval_batch_size, process_index=0, process_count=1
  ):
    labels.extend(host_batch["label"][host_batch["mask"]])
  assert len(labels) == NUM_TEST


@pytest.mark.parametrize("process_count", [2, 3])
def test_eval_hosts_together_see_every_example_once(config, process_count):
  setup = state_lib.prepare(config)

  def examples(process_index, count):
    batches = list(
      pipeline.eval_batches(
        setup.builder, config.data, local_batch_size=16, process_index=process_index, process_count=count
      )
    )
    seen = collections.Counter(
      image.tobytes() + bytes([label])
      for batch in batches
      for image, label in zip(batch["image"][batch["mask"]], batch["label"][batch["mask"]])
    )
    return len(batches), seen

  _, whole_split = examples(0, 1)
  assert sum(whole_split.values()) == NUM_TEST
  together = collections.Counter()
  for process_index in range(process_count):
    num_batches, seen = examples(process_index, process_count)
    # Every host runs the same number of eval steps, or a multi-host eval would deadlock.
    assert num_batches == pipeline.eval_batch_count(
      setup.builder, config.data, local_batch_size=16, process_count=process_count
    )
    together += seen
  assert together == whole_split
