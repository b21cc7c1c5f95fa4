"""A registry of Flax classifiers, found by name.

Every model is built the same way, `create(name, num_classes=..., dtype=..., **options)`, and is
a `flax.linen.Module` called as `model(images, train=...)` on NHWC images, giving logits.
Adding an architecture means one file here that registers it, and no other edit.

Registering. A family's file defines a Flax module with fields `num_classes` and `dtype` and
registers it, as a class or as a `functools.partial` of one whose keywords fix the architecture:

    @register("lenet5", native_input=(32, 32, 1), native_classes=10, params=61_706,
              multiply_adds=416_520e-9, small=((28, 28, 1), {}))
    class LeNet5(nn.Module): ...

    register("resnet50", params=25_557_032, multiply_adds=4.089, small=((32, 32, 3), {"width": 4}))(
        functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), bottleneck=True))

The module's other fields are the model's options, declared once: `create` accepts exactly
those (from `config.model_options`), with the module's defaults or the registration's
`defaults`, and refuses any other name with a `UserError` that lists them. A module checks its
options' values in `__post_init__` with `check_choice`, `check_range` or by raising
`OptionError`, which `create` reports as a one-line `UserError` naming the model; any other
exception is a bug and keeps its traceback. What the registration records beside the module,
`params` (the exact parameter count at the native input and class count, auxiliary heads
included), `multiply_adds` (G, one eval-mode forward pass there, within 1%) and `small` (an
input shape and options that still run every layer, for quick train steps), is what
tests/test_models.py checks every registered model against; a model registered without them
fails there by name.

Training. `train_forward(model, variables, images, rngs=...)` is the forward pass the train
step differentiates; it returns `(logits, auxiliary, batch_stats)`: the main logits, a list of
`(weight, aux_logits)` pairs, one per auxiliary classifier that ran (empty for models without
any), and the updated BatchNorm statistics (`{}` for models without BatchNorm). The step adds
`weight * loss(aux_logits)` to the main loss. A model declares auxiliary classifiers through
`layers.AuxiliaryClassifiers` (its fields `aux_heads` and `aux_loss_weight`, and
`layers.sow_aux_logits` in each head); nothing else reads or writes their collection.
"""

import dataclasses
import difflib
import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from imagenet_train import rules
from imagenet_train.errors import UserError
from imagenet_train.models import counting, layers

# name -> constructor called as (*, num_classes, dtype, **options); its keyword parameters are the options.
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# The input each model was designed for, (height, width, channels), and its class count.
_NATIVE: dict[str, tuple[tuple[int, int, int], int]] = {}
_EXPECTED: dict[str, "Expected"] = {}
_NOT_OPTIONS = ("num_classes", "dtype", "parent", "name")


class OptionError(ValueError):
  """An option's value a model cannot take; `create` reports it as a UserError naming the model."""


def check_choice(option: str, value, choices) -> None:
  _check(option, value, rules.OneOf(tuple(choices)))


def check_range(option: str, value, *, low: float = 0.0, high: float | None = None, low_open: bool = False) -> None:
  """Refuses `value` outside [low, high), or (low, high) with `low_open`; no `high`: unbounded."""
  _check(option, value, rules.Number(low, high, low_open=low_open, high_open=True))


def _check(option: str, value, rule) -> None:
  must_be = rule.problem(value)
  if must_be is not None:
    raise OptionError(f"{option} must be {must_be}, not {value!r}")


@dataclasses.dataclass(frozen=True)
class Expected:
  """What a registered model must measure at its native input and class count (see the module docstring)."""

  params: int | None = None
  multiply_adds: float | None = None  # G
  small: tuple[tuple[int, int, int], dict[str, Any]] | None = None


class Constructor:
  """`module` with the `architecture` fields fixed, called as (*, num_classes, dtype, **options):
  the options are the module's other fields, defaulting to `defaults` or to the module's own."""

  def __init__(self, module: type[nn.Module], architecture: dict[str, Any], defaults: dict[str, Any]):
    fields = {f.name: f for f in dataclasses.fields(module) if f.init and f.name not in ("parent", "name")}
    stray = sorted((set(architecture) | set(defaults) | {"num_classes", "dtype"}) - set(fields))
    if stray:
      raise ValueError(f"{module.__name__} has no fields {stray}")
    self.module, self.architecture, self.options = module, dict(architecture), {}
    for name, field in fields.items():
      if name in _NOT_OPTIONS or name in architecture:
        continue
      default = defaults.get(name, field.default)
      if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
      if default is dataclasses.MISSING:
        raise ValueError(f"{module.__name__}.{name} needs a default or a value in the registration")
      self.options[name] = default
    keyword = inspect.Parameter.KEYWORD_ONLY
    self.__signature__ = inspect.Signature(
      [inspect.Parameter("num_classes", keyword), inspect.Parameter("dtype", keyword, default=jnp.float32)]
      + [inspect.Parameter(name, keyword, default=default) for name, default in self.options.items()]
    )

  def __call__(self, *, num_classes: int, dtype=jnp.float32, **options) -> nn.Module:
    return self.module(num_classes=num_classes, dtype=dtype, **self.architecture, **{**self.options, **options})


def register(
  name: str,
  *,
  native_input=(224, 224, 3),
  native_classes: int = 1000,
  params: int | None = None,
  multiply_adds: float | None = None,
  small=None,
  defaults: dict[str, Any] | None = None,
):
  """Registers a Flax module class, or a `functools.partial` of one whose keywords fix its
  architecture, under `name`; returns what it was given, so that it also decorates a class."""

  def add(module):
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} is registered twice")
    if isinstance(module, functools.partial):
      constructor = Constructor(module.func, module.keywords, defaults or {})
    elif isinstance(module, type) and issubclass(module, nn.Module):
      constructor = Constructor(module, {}, defaults or {})
    else:
      raise TypeError(f"register {name!r} with a Flax module class or a functools.partial of one, not {module!r}")
    _REGISTRY[name] = constructor
    _NATIVE[name] = (tuple(native_input), native_classes)
    _EXPECTED[name] = Expected(params, multiply_adds, small)
    return module

  return add


def _import_families():
  for module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{module.name}")


def names() -> list[str]:
  """All registered model names, sorted."""
  _import_families()
  return sorted(_REGISTRY)


def _constructor(name: str) -> Callable[..., nn.Module]:
  _import_families()
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else "run `python -m imagenet_train models` to list them"
    raise UserError(f"unknown model {name!r}: {hint}")
  return _REGISTRY[name]


def options(name: str) -> dict[str, Any]:
  """The options model `name` takes, with their defaults."""
  parameters = inspect.signature(_constructor(name)).parameters.values()
  return {
    p.name: p.default
    for p in parameters
    if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _NOT_OPTIONS
  }


def create(name: str, *, num_classes: int, dtype, **model_options) -> nn.Module:
  """Builds the registered model `name`; unknown names list the closest ones, unknown options
  and option values it cannot take are UserErrors naming the model."""
  constructor, declared = _constructor(name), options(name)
  unknown = [option for option in model_options if option not in declared]
  if unknown:
    raise UserError(
      f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for model "
      f"{name!r}: its options are {', '.join(declared) or 'none'}; check config.model_options"
    )
  try:
    return constructor(num_classes=num_classes, dtype=dtype, **model_options)
  except OptionError as error:
    raise UserError(f"bad option for model {name!r}: {error}; check config.model_options") from None


def expected(name: str) -> Expected:
  """The figures model `name` was registered with (None where it was registered without them)."""
  _constructor(name)  # validates the name
  return _EXPECTED.get(name, Expected())


def native_input(name: str) -> tuple[tuple[int, int, int], int]:
  """The (height, width, channels) input and the class count `name` was designed for."""
  _constructor(name)  # validates the name
  return _NATIVE[name]


def train_forward(model: nn.Module, variables, images, *, rngs=None):
  """The training-mode forward pass: (logits, auxiliary, batch_stats).

  `auxiliary` is a list of (weight, aux_logits) pairs, one per auxiliary classifier that ran
  (empty for models without any), in the order the model ran them; the objective adds
  weight * loss(aux_logits) to the main loss. `batch_stats` is the updated BatchNorm statistics
  ({} for models without BatchNorm)."""
  variables = {collection: v for collection, v in variables.items() if collection != layers.AUX_LOGITS}  # init's
  logits, updates = model.apply(variables, images, train=True, rngs=rngs, mutable=["batch_stats", layers.AUX_LOGITS])
  sown = traverse_util.flatten_dict(dict(updates.get(layers.AUX_LOGITS, {})))
  if sown and not isinstance(model, layers.AuxiliaryClassifiers):
    raise TypeError(
      f"{type(model).__name__} sows auxiliary logits but is no layers.AuxiliaryClassifiers, so their loss has no weight"
    )
  auxiliary = [(float(model.aux_weight("/".join(path[:-1]))), aux) for path, values in sown.items() for aux in values]
  return logits, auxiliary, dict(updates.get("batch_stats", {}))


def abstract_variables(name: str, **model_options):
  """The model `name` at its native input and class count, and its variables' shapes."""
  shape, num_classes = native_input(name)
  model = create(name, num_classes=num_classes, dtype=jnp.float32, **model_options)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False))
  return model, nn.meta.unbox(variables)


def parameter_count(variables) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


def multiply_adds(name: str, **model_options) -> int:
  """Multiply-adds of one eval-mode forward pass at the native input, from abstract shapes."""
  model, variables = abstract_variables(name, **model_options)
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
