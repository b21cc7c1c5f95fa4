"""A registry of Flax classifiers, found by name.

Every constructor has the same keyword signature, `(*, num_classes, dtype, **options)`, and
returns a `flax.linen.Module` called as `model(images, train=...)` on NHWC images, giving
logits. Adding an architecture means one file here that uses `@register`, and no other edit.
"""

import difflib
import importlib
import pkgutil
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from imagenet_train.errors import UserError
from imagenet_train.models import counting

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# The input each model was designed for, (height, width, channels), and its class count.
_NATIVE: dict[str, tuple[tuple[int, int, int], int]] = {}


def register(name: str, native_input=(224, 224, 3), native_classes: int = 1000):
  """Adds a constructor to the registry under `name`."""

  def add(constructor):
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = constructor
    _NATIVE[name] = (tuple(native_input), native_classes)
    return constructor

  return add


def _import_families():
  for module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{module.name}")


def names() -> list[str]:
  """All registered model names, sorted."""
  _import_families()
  return sorted(_REGISTRY)


def create(name: str, *, num_classes: int, dtype, **options) -> nn.Module:
  """Builds the registered model `name`; unknown names list the closest ones."""
  _import_families()
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else "run `python -m imagenet_train models` to list them"
    raise UserError(f"unknown model {name!r}: {hint}")
  try:
    return _REGISTRY[name](num_classes=num_classes, dtype=dtype, **options)
  except TypeError as error:
    raise UserError(f"bad option for model {name!r}: {error}; check config.model_options") from None


def native_input(name: str) -> tuple[tuple[int, int, int], int]:
  """The (height, width, channels) input and the class count `name` was designed for."""
  create(name, num_classes=1, dtype=jnp.float32)  # validates the name
  return _NATIVE[name]


def abstract_variables(name: str, **options):
  """The model `name` at its native input and class count, and its variables' shapes."""
  shape, num_classes = native_input(name)
  model = create(name, num_classes=num_classes, dtype=jnp.float32, **options)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False))
  return model, nn.meta.unbox(variables)


def parameter_count(variables) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


def multiply_adds(name: str, **options) -> int:
  """Multiply-adds of one eval-mode forward pass at the native input, from abstract shapes."""
  model, variables = abstract_variables(name, **options)
  return counting.multiply_adds(model, variables, native_input(name)[0])


def summaries(selected: list[str] | None = None) -> list[tuple[str, int, int, tuple[int, int, int]]]:
  """(name, parameters, multiply-adds, native input shape) of the `selected` models (default:
  all), from abstract shapes."""
  rows = []
  for name in selected or names():
    model, variables = abstract_variables(name)
    shape = native_input(name)[0]
    rows.append((name, parameter_count(variables), counting.multiply_adds(model, variables, shape), shape))
  return rows
