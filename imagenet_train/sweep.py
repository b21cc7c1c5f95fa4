"""Hyperparameter sweeps: a Python file lists config overrides, one dict per run.

A sweep file, like a config file, is loaded by path; it defines `get_sweep()`, which builds its
runs with this module's helpers:

    from imagenet_train.sweep import axis, chain, product, zipped

    def get_sweep():
      return chain(
          product(axis("learning_rate", [0.05, 0.1]), axis("batch_size", [128, 256])),
          zipped(axis("optimizer.name", ["adam", "rmsprop"]), axis("learning_rate", [1e-3, 1e-4])))

Dotted field names address nested config fields. Every override is checked against the config
before any run starts, so a misspelt field fails at once instead of after hours of other runs.
Each run trains in its own workdir, ROOT/SWEEP/NN_NAME, whose `sweep.json` records its overrides
for `imagenet_train.report`.
"""

import copy
import dataclasses
import difflib
import hashlib
import importlib.machinery
import importlib.util
import itertools
import json
import os
import re

import ml_collections
import numpy as np

from imagenet_train.config import schema
from imagenet_train.errors import UserError

MAX_NAME_LENGTH = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,-]")
_HELPERS = "imagenet_train.sweep's axis, product, zipped and chain"


# Building sweeps -------------------------------------------------------------------------------


def axis(field: str, values) -> list[dict]:
  """One field's values as single-key override dicts; numpy scalars (np.logspace's) become Python
  numbers, so that ConfigDict's type checks, the flags and sweep.json all see plain values."""
  if isinstance(values, (str, bytes)):
    raise ValueError(f"axis {field!r} needs a list of values, not the string {values!r}")
  return [{field: value.item() if isinstance(value, np.generic) else value} for value in values]


def product(*axes: list[dict]) -> list[dict]:
  """Every combination of one entry from each axis, the last axis varying fastest."""
  return [_merge(combination, "product") for combination in itertools.product(*axes)]


def zipped(*axes: list[dict]) -> list[dict]:
  """The first entries of all axes together, then the second entries, and so on."""
  lengths = [len(entries) for entries in axes]
  if len(set(lengths)) > 1:
    raise ValueError(f"zipped needs axes of equal length; got lengths {', '.join(map(str, lengths))}")
  return [_merge(entries, "zipped") for entries in zip(*axes)]


def chain(*sweeps: list[dict]) -> list[dict]:
  """The runs of each sweep, one sweep after the other."""
  return [dict(overrides) for sweep in sweeps for overrides in sweep]


def _merge(dicts, helper: str) -> dict:
  """One run's overrides from several axes' entries; a field set twice is a mistake in the sweep."""
  merged = {}
  for entry in dicts:
    for field, value in entry.items():
      if field in merged:
        raise ValueError(f"{helper} sets {field} twice in one run ({merged[field]!r} and {value!r})")
      merged[field] = value
  return merged


# Loading and checking --------------------------------------------------------------------------


def load_sweep(path: str) -> list[dict]:
  """The runs that the sweep file at `path` lists with its `get_sweep()`."""
  if not os.path.isfile(path):
    raise UserError(
      f"cannot find sweep file {path}: pass --sweep=FILE, a Python file that defines get_sweep() "
      f"(see sweeps/lr_batch.py)"
    )
  name = f"sweep_{os.path.splitext(os.path.basename(path))[0]}"
  loader = importlib.machinery.SourceFileLoader(name, path)  # any file name, as config_flags reads configs
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
  loader.exec_module(module)
  if not callable(getattr(module, "get_sweep", None)):
    raise UserError(
      f"sweep file {path} defines no get_sweep(): add one that returns the runs' overrides, built with {_HELPERS}"
    )
  try:
    runs = module.get_sweep()
  except ValueError as error:  # the helpers' complaints about how the sweep is built
    raise UserError(f"sweep file {path}: {error}") from None
  _check_runs(runs, path)
  return runs


def _check_runs(runs, path: str):
  """Holds `get_sweep()` to what load_sweep promises: a non-empty list of dicts keyed by field name."""
  if not isinstance(runs, list) or not all(
    isinstance(run, dict) and all(isinstance(field, str) for field in run) for run in runs
  ):
    raise UserError(
      f"get_sweep() in {path} must return a list of dicts from field names to values: build its runs with {_HELPERS}"
    )
  if not runs:
    raise UserError(f"get_sweep() in {path} returned no runs: check that no axis is empty")


def check_overrides(config: ml_collections.ConfigDict, runs: list[dict]):
  """Raises a UserError for the first override that names no config field or has a value the field
  cannot take, and for a run listed twice; called before any run starts."""
  for index, overrides in enumerate(runs):
    if overrides in runs[:index]:
      raise UserError(
        f"the sweep lists the run {overrides} twice (runs {runs.index(overrides)} and {index}): remove the repeat"
      )
    try:
      schema.check(_apply(config, overrides))
    except UserError as error:
      raise UserError(f"sweep run {index} ({run_name(overrides)}): {error}") from None


def _apply(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  """A copy of `config` with `overrides` set, as locked as the original."""
  config = copy.deepcopy(config)
  with config.unlocked():
    for field, value in overrides.items():
      parent, key = _parent(config, field)
      try:
        parent[key] = value
      except TypeError:
        raise UserError(
          f"the sweep sets {field} to {value!r} ({type(value).__name__}), but the config's {field} "
          f"is a {parent.get_type(key).__name__}: give a value of that type"
        ) from None
  return config


def _parent(config: ml_collections.ConfigDict, field: str):
  """The ConfigDict that holds the dotted `field`, and the field's last name in it."""
  *path, key = field.split(".")
  node = config
  for name in path + [key]:
    if not isinstance(node, ml_collections.ConfigDict) or name not in node:
      raise UserError(
        f"the sweep overrides {field}, which the config lacks: check its spelling against the config "
        f"file{_suggestion(config, field)}"
      )
    parent, node = node, node[name]
  return parent, key


def _suggestion(config: ml_collections.ConfigDict, field: str) -> str:
  close = difflib.get_close_matches(field, _fields(config), n=1)
  return f" (did you mean {close[0]}?)" if close else ""


def _fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every dotted field name of `config`, nested ConfigDicts included."""
  names = []
  for key, value in config.items():
    names.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      names += _fields(value, f"{prefix}{key}.")
  return names


# Naming and running ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep (`sweep` names it): its overrides, the config they give, and the workdir it trains in."""

  name: str
  overrides: dict
  config: ml_collections.ConfigDict
  workdir: str
  sweep: str


def format_value(value) -> str:
  """A value as config_flags parses it back: strings as they are, everything else as a Python literal."""
  return value if isinstance(value, str) else repr(value)


def run_name(overrides: dict, sweep: list[dict] | None = None) -> str:
  """A readable, filesystem-safe name such as `learning_rate=0.1,batch_size=32`.

  Fields go by their last dotted name unless two fields of `sweep` (default: these overrides)
  share it, so that `optimizer.name` and `data.name` stay apart. Names longer than
  MAX_NAME_LENGTH are cut and end in a hash of the overrides, which keeps them distinct.
  """
  if not overrides:
    return "defaults"
  labels = _labels([*overrides, *(field for run in sweep or [] for field in run)])
  name = _UNSAFE.sub("_", ",".join(f"{labels[field]}={format_value(value)}" for field, value in overrides.items()))
  if len(name) > MAX_NAME_LENGTH:
    name = f"{name[: MAX_NAME_LENGTH - 9]}-{_digest(overrides)}"
  return name


def _labels(fields: list[str]) -> dict[str, str]:
  """Each field's short name (its last dotted component) where no other field has it, else its full name."""
  fields = list(dict.fromkeys(fields))
  shorts = [field.split(".")[-1] for field in fields]
  return {field: short if shorts.count(short) == 1 else field for field, short in zip(fields, shorts)}


def _digest(overrides: dict) -> str:
  return hashlib.sha256(repr(sorted(overrides.items())).encode()).hexdigest()[:8]


def run_names(runs: list[dict]) -> list[str]:
  """The names of a sweep's runs; where replacing unsafe characters made two alike, both get a hash."""
  names = [run_name(overrides, runs) for overrides in runs]
  return [f"{name}-{_digest(overrides)}" if names.count(name) > 1 else name for name, overrides in zip(names, runs)]


def expand(config: ml_collections.ConfigDict, runs: list[dict], root_workdir: str, sweep_name: str) -> list[Run]:
  """The sweep's runs, each with its config and its workdir ROOT/SWEEP/NN_NAME, after checking every override."""
  check_overrides(config, runs)
  names = run_names(runs)
  assert len(set(names)) == len(names), names
  width = max(2, len(str(len(runs) - 1)))  # the workdirs sort in run order
  return [
    Run(
      name=name,
      overrides=overrides,
      config=_apply(config, overrides),
      sweep=sweep_name,
      workdir=os.path.join(root_workdir, sweep_name, f"{index:0{width}d}_{name}"),
    )
    for index, (name, overrides) in enumerate(zip(names, runs))
  ]


def override_flags(overrides: dict) -> list[str]:
  """The `--config.FIELD=VALUE` arguments that reproduce the overrides on the command line (one argument each,
  no shell quoting). A None value has no flag form: config_flags reads `None` as a string for a str field."""
  return [f"--config.{field}={format_value(value)}" for field, value in overrides.items()]


def write_run_info(run: Run):
  """Writes the run's `sweep.json`, which tells the report which fields the run overrides."""
  os.makedirs(run.workdir, exist_ok=True)
  with open(os.path.join(run.workdir, "sweep.json"), "w") as f:
    json.dump({"name": run.name, "overrides": run.overrides, "sweep": run.sweep}, f, indent=2)
