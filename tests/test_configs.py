"""Every recipe in configs/ loads under each of its arguments, and its smoke variant trains two steps.

A config file lists the arguments it takes in a module-level `VARIANTS` tuple (the empty string
for a file without arguments); its smoke variant is `SMOKE`, default "smoke". The smoke runs use
the session's fake ILSVRC2012 data (or the small Fashion-MNIST files for that track), through
the same train loop, pipeline and optimizer as a real run.
"""

import importlib.util
import pathlib

import jax
import ml_collections
import numpy as np
import pytest

from imagenet_train import models, protocols, sharding
from imagenet_train.config import arguments, schema
from imagenet_train.errors import UserError

from conftest import REPO, start_training

CONFIG_FILES = sorted(path.name for path in (REPO / "configs").glob("*.py"))


def _module(name: str):
  spec = importlib.util.spec_from_file_location(f"config_{pathlib.Path(name).stem}", REPO / "configs" / name)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _variants(module) -> tuple[str, ...]:
  return tuple(getattr(module, "VARIANTS", ("",)))


def test_there_is_a_config_per_ilsvrc_entry():
  stems = {pathlib.Path(name).stem for name in CONFIG_FILES}
  for entry in (
    "lenet5",
    "alexnet",
    "zfnet",
    "overfeat",
    "sppnet",
    "vgg",
    "googlenet",
    "bn_inception",
    "inception_v3",
    "inception_v4",
    "prelu_net",
    "resnet",
    "resnext",
    "senet",
    "densenet",
  ):
    assert entry in stems, f"configs/{entry}.py is missing"


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_variant_loads_with_its_paper_and_a_reproduction_command(name):
  module = _module(name)
  assert f"--config=configs/{name}" in module.__doc__, "the docstring gives the command that reproduces it"
  registered = models.names()
  for arg in _variants(module):
    config = module.get_config(arg)
    assert config.model in registered, (arg, config.model)
    assert config.evaluation.protocol in protocols.names(), (arg, config.evaluation.protocol)
    paper = config.paper
    assert paper.reference and paper.table, (arg, "the paper block names its source")
    assert paper.protocol in protocols.names(), (arg, paper.protocol)
    assert paper.top1 is not None or paper.top5 is not None, (arg, "the paper block holds a reported error")
    for error in (paper.top1, paper.top5, paper.ensemble_top1, paper.ensemble_top5):
      assert error is None or 0 < error < 100, (arg, error)
    assert config.data.pp_train and config.data.pp_eval
    config.data.data_dir = None  # the users' own folder
    schema.check(config)  # every value within its rule


def test_every_field_has_a_rule_and_every_rule_a_field():
  """A field added without a rule would go unchecked; a rule left after its field was removed checks nothing."""

  def fields(config, prefix=""):
    for key, value in config.items():
      if isinstance(value, ml_collections.ConfigDict) and key != "model_options":
        yield from fields(value, f"{prefix}{key}.")
      else:
        yield f"{prefix}{key}"

  assert set(fields(schema.base_config())) == set(schema.RULES)
  for field, rule in schema.RULES.items():  # the example a refusal gives passes: the default, or a stated one
    value = schema.base_config()
    for part in field.split("."):
      value = value[part]
    if rule is not None:
      assert rule.problem(schema.EXAMPLES.get(field, value)) is None, (field, value)


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_smoke_variant_trains_two_steps(name, fake_imagenet, fashion_mnist_dir, data_dir):
  """The recipe's model, optimizer and schedule, its training pipeline on fake data, two jitted
  steps on one device (the loop around them is tested once in test_cli and test_protocols)."""
  module = _module(name)
  config = module.get_config(getattr(module, "SMOKE", "smoke"))
  assert config.num_train_steps == 2
  if config.data.name == "fashion_mnist_local":
    config.data.manual_dir, config.data.data_dir = fashion_mnist_dir, data_dir
  else:
    assert config.data.name == "imagenet2012"
    config.data.manual_dir, config.data.data_dir = fake_imagenet[0], fake_imagenet[1]
  setup, state, step, batches = start_training(config, jax.devices()[:1])
  before = jax.device_get(state.params)
  for _ in range(config.num_train_steps):
    state, metrics, learning_rate = step(state, sharding.to_global(next(batches), setup.mesh))
    assert np.isfinite(float(metrics.compute()["loss"])) and float(learning_rate) >= 0  # 0 at a warm-up's start
  assert int(state.nonfinite_step) == -1
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.params))]
  assert any(moved), "two steps changed no parameter"


def test_a_bad_config_argument_is_one_line():
  with pytest.raises(UserError, match="not one of"):
    arguments.parse_arg("depth=50,colour=red", depth=18, smoke=False)
  with pytest.raises(UserError, match="is not a valid int"):
    arguments.parse_arg("depth=fifty", depth=18)
  assert arguments.parse_arg("101,smoke", depth=18, version="v1.5", smoke=False).to_dict() == {
    "depth": 101,
    "version": "v1.5",
    "smoke": True,
  }
