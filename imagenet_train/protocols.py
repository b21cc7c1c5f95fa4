"""The ILSVRC papers' evaluation protocols, found by name: each turns the evaluation config into the views of an image.

A protocol is a function from the config to the preprocessing spec of each pass it makes over the eval split (one,
or one per scale for dense), registered with `@protocol(name)`. Every protocol but `center` keeps the eval spec's
decode and its final value and label ops (normalize, subtract_mean, onehot: each op declares its kind where it is
registered) and puts its own geometry between them, so that every protocol sees the same pixel values:

- center: the config's own `data.pp_eval` (one view); training's periodic evaluation.
- 10crop: the four corner and the center crops and their mirrors (Krizhevsky et al. 2012); with
  `evaluation.square` of the central square first, as AlexNet and ZFNet did.
- multicrop: a 5x5 grid of crops with mirrors at each scale, 150 views (Simonyan and Zisserman 2014).
- 144crop: GoogLeNet's 4 scales x 3 squares x 6 crops x 2 mirrors (Szegedy et al. 2014).
- dense: the whole image at each shorter side Q in `evaluation.scales`, through the network as a fully
  convolutional one, averaged with its mirror when `evaluation.flip` (Simonyan and Zisserman; He et al. 2015).

The registry's names are what the CLI's --protocol, the config checks and `report` accept; `ensemble` (the
average of several runs, each under one of these) is not a protocol of its own views.
"""

import dataclasses
from collections.abc import Callable

import ml_collections

from imagenet_train.errors import UserError

ENSEMBLE = "ensemble"
CENTER = "center"  # the eval spec as it is: training evaluates with it


@dataclasses.dataclass(frozen=True)
class Protocol:
  name: str
  # evaluation config -> the geometry ops of each pass, placed between the eval spec's decode and value ops;
  # None for a protocol that takes the eval spec as it is.
  geometries: Callable[[ml_collections.ConfigDict], list[str]] | None
  # Whole images of varying sizes, scored by a network that must run at any size (dense evaluation).
  whole_images: bool = False


_PROTOCOLS: dict[str, Protocol] = {}


def protocol(name: str, *, whole_images: bool = False):
  """Registers `geometries(evaluation) -> [geometry spec of each pass]` as the protocol `name`."""

  def add(geometries):
    if name in _PROTOCOLS or name == ENSEMBLE:
      raise ValueError(f"protocol {name!r} is registered twice")
    _PROTOCOLS[name] = Protocol(name, geometries, whole_images)
    return geometries

  return add


def names() -> tuple[str, ...]:
  """Every registered protocol, in registration order."""
  return tuple(_PROTOCOLS)


def get(name: str) -> Protocol:
  if name not in _PROTOCOLS:
    raise UserError(f"unknown protocol {name!r}: use one of {', '.join(names() + (ENSEMBLE,))} in --protocol")
  return _PROTOCOLS[name]


def specs(config: ml_collections.ConfigDict, name: str) -> list[str]:
  """The preprocessing spec of each pass protocol `name` makes over the eval split. Views are stacked in front of
  each image's height, width and channels."""
  from imagenet_train.data import ops  # the ops' kinds are declared with the ops, beside TensorFlow

  chosen = get(name)
  pp_eval = config.data.pp_eval
  if chosen.geometries is None:
    return [pp_eval]
  calls = ops.calls(pp_eval)
  decode = calls[0].text if calls[0].kind == ops.DECODE else "decode(3)"
  first_value = len(calls)
  while first_value > 1 and calls[first_value - 1].kind in (ops.VALUE, ops.LABEL):
    first_value -= 1
  values = [call.text for call in calls[first_value:]]
  return ["|".join([decode, geometry, *values]) for geometry in chosen.geometries(config.evaluation)]


protocol(CENTER)(None)


@protocol("10crop")
def _ten_crop(e: ml_collections.ConfigDict) -> list[str]:
  square = f"|center_crop({e.resize})" if e.square else ""
  return [f"resize_small({e.resize}){square}|ten_crop({e.crop})"]


@protocol("dense", whole_images=True)
def _dense(e: ml_collections.ConfigDict) -> list[str]:
  return [f"resize_small({scale}, multiple={e.multiple})" for scale in e.scales]


@protocol("multicrop")
def _multicrop(e: ml_collections.ConfigDict) -> list[str]:
  return [f"vgg_multi_crop({e.crop}, scales={tuple(e.scales)})"]


@protocol("144crop")
def _googlenet_crops(e: ml_collections.ConfigDict) -> list[str]:
  return [f"googlenet_crops({e.crop}, scales={tuple(e.googlenet_scales)})"]
