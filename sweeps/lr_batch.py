"""The default run (configs/default.py) at learning rates 0.05 and 0.1 by batch sizes 128 and 256.

    python -m imagenet_train sweep --config=configs/default.py --sweep=sweeps/lr_batch.py --workdir=workdirs/sweeps

Four runs, each in its own workdir under workdirs/sweeps with a sweep.json of its overrides for
the report. The grid shows whether the better learning rate for LeNet-5 on Fashion-MNIST moves
with the batch size.
"""

from imagenet_train.sweep import axis, product


def get_sweep():
  return product(axis("learning_rate", [0.05, 0.1]), axis("batch_size", [128, 256]))
