"""Train ImageNet classifiers with JAX and Flax, one config per ILSVRC entry."""

__version__ = "0.1.0"
