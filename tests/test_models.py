"""The model registry: exact parameter counts, and every model trains a step at a small size.

The expected figures (parameters, multiply-adds, a small input) sit beside each model's
registration in imagenet_train/models/; the tests here walk the registry, so that a new model
is checked with no edit of this file, and fails by name if it was registered without them.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from imagenet_train import models, sharding
from imagenet_train import state as state_lib
from imagenet_train import step as step_lib
from imagenet_train.config.schema import base_config
from imagenet_train.data import DatasetInfo
from imagenet_train.errors import UserError
from imagenet_train.models import layers

# Millions of parameters as the papers round them (without auxiliary heads where marked).
PAPER_ROUNDED = {
  "zfnet": (62.4, None),
  "googlenet": (7.0, ("googlenet", {"aux_heads": False})),
  "bn_inception": (11.3, None),
  "overfeat_fast": (145.9, None),
  "overfeat_accurate": (144.7, None),
}

# The suite compiles a train step for one model of each kind of layer; compiling all 45 on a
# 2-core CPU would take most of an hour. The others are traced (every shape, the loss, the
# update) here, and compiled and run by `make test-slow` (the `slow` marker).
COMPILED = {
  "lenet5",
  "alexnet",
  "alexnet_torchvision",
  "zfnet",
  "sppnet",
  "vgg_c_bn",
  "resnet18",
  "se_resnet50",
  "densenet121",
  "googlenet",
}
# Models whose eval-mode forward pass is also compiled and run twice (dropout, BatchNorm, LRN,
# auxiliary heads, spatial pyramid pooling between them).
EVAL_CHECKED = {"alexnet", "vgg_c_bn", "resnet18", "googlenet", "sppnet"}


def check_expected_figures(name: str) -> None:
  """Model `name` was registered with its figures, and has them: its exact parameter count and
  its multiply-adds within 1%, at its native input and class count (auxiliary heads counted in
  the parameters, left out of the multiply-adds), and a small input for its train step."""
  expected = models.expected(name)
  missing = [figure for figure in ("params", "multiply_adds", "small") if getattr(expected, figure) is None]
  assert not missing, (
    f"model {name!r} is registered without its expected {', '.join(missing)}: give them to its register(...) call"
  )
  [(_, params, multiply_adds, _)] = models.summaries([name])
  assert params == expected.params, f"model {name!r} has {params:,} parameters, registered {expected.params:,}"
  assert abs(multiply_adds / 1e9 - expected.multiply_adds) <= 0.01 * expected.multiply_adds, (
    f"model {name!r} counts {multiply_adds / 1e9:.4g} G multiply-adds, registered {expected.multiply_adds:.4g} G"
  )


@pytest.mark.parametrize("name", models.names())
def test_registered_model_has_its_expected_figures(name):
  check_expected_figures(name)


def test_paper_rounded_parameter_counts():
  for name, (millions, variant) in PAPER_ROUNDED.items():
    count = (
      models.expected(name).params
      if variant is None
      else models.parameter_count(models.abstract_variables(variant[0], **variant[1])[1])
    )
    assert round(count / 1e6, 1) == millions, (name, count)


def _train_step(name, compile_and_run):
  """One train step at a small size, compiled and run, or only traced."""
  shape, options = models.expected(name).small
  config = base_config()
  config.model, config.dtype, config.batch_size, config.num_train_steps = name, "float32", 4, 10
  config.model_options.update(options)
  mesh = sharding.create_mesh(jax.devices()[:1])
  setup = state_lib.build(config, mesh, DatasetInfo(10, shape, num_train_examples=40, num_eval_examples=4))
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.standard_normal((4, *shape)).astype(np.float32),
    "label": rng.integers(0, 10, 4).astype(np.int32),
  }
  step = step_lib.jit_train_step(setup)
  if not compile_and_run:
    new_state, metrics, _ = jax.eval_shape(step, setup.abstract_state, batch)
    assert jax.tree.structure(new_state) == jax.tree.structure(setup.abstract_state)
    assert metrics.loss.total.shape == ()
    return
  new_state, metrics, _ = step(setup.initial_state(), sharding.to_global(batch, mesh))
  assert np.isfinite(float(metrics.compute()["loss"]))
  assert int(new_state.step) == 1
  if name in EVAL_CHECKED:
    variables = {"params": new_state.params, "batch_stats": new_state.batch_stats}
    evaluate = jax.jit(lambda v, x: setup.model.apply(v, x, train=False))
    first, second = evaluate(variables, batch["image"]), evaluate(variables, batch["image"])
    assert first.shape == (4, 10)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", sorted(COMPILED))
def test_model_trains_a_step(name):
  _train_step(name, compile_and_run=True)


@pytest.mark.parametrize("name", sorted(set(models.names()) - COMPILED))
def test_model_train_step_traces(name):
  _train_step(name, compile_and_run=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(models.names()) - COMPILED))
def test_model_trains_a_step_compiled(name):
  _train_step(name, compile_and_run=True)


class _WithAuxiliaryHead(layers.AuxiliaryClassifiers, nn.Module):
  """GoogLeNet-style: an auxiliary classifier beside the main one, declared as the interface asks."""

  num_classes: int = 3
  aux_heads: bool = True
  aux_loss_weight: float = 0.3

  @nn.compact
  def __call__(self, x, *, train):
    x = x.reshape(x.shape[0], -1)
    if self.wants_aux(train):
      layers.sow_aux_logits(self, nn.Dense(self.num_classes, name="aux")(x))
    return nn.Dense(self.num_classes, name="main")(x)


def test_train_forward_returns_weighted_auxiliary_logits_and_batch_stats():
  images = np.random.default_rng(0).standard_normal((4, 2, 2, 1)).astype(np.float32)
  model = _WithAuxiliaryHead(aux_loss_weight=0.3)
  variables = model.init(jax.random.key(0), images, train=False)
  logits, auxiliary, batch_stats = models.train_forward(model, variables, images, rngs={"dropout": jax.random.key(1)})
  np.testing.assert_allclose(logits, model.apply(variables, images, train=False), rtol=1e-6)
  [(weight, aux_logits)] = auxiliary
  assert weight == 0.3 and isinstance(weight, float)
  kernel = variables["params"]["aux"]
  np.testing.assert_allclose(aux_logits, images.reshape(4, -1) @ kernel["kernel"] + kernel["bias"], rtol=1e-6)
  assert batch_stats == {}
  # Left out with aux_heads=False, and none for models without auxiliary classifiers.
  _, auxiliary, _ = models.train_forward(_WithAuxiliaryHead(aux_heads=False), variables, images)
  assert auxiliary == []
  # The real families: GoogLeNet's two heads in the order they run, and BatchNorm statistics.
  googlenet = models.create("googlenet_torchvision", num_classes=10, dtype=jnp.float32, width_multiplier=1 / 8)
  images = np.zeros((2, 32, 32, 3), np.float32)
  variables = jax.eval_shape(lambda: googlenet.init(jax.random.key(0), images, train=False))
  weights = []

  def forward(v, x):
    logits, auxiliary, batch_stats = models.train_forward(googlenet, v, x, rngs={"dropout": jax.random.key(1)})
    weights.extend(weight for weight, _ in auxiliary)
    return logits, [aux for _, aux in auxiliary], batch_stats

  logits, auxiliary, batch_stats = jax.eval_shape(forward, variables, images)
  assert logits.shape == (2, 10) and [aux.shape for aux in auxiliary] == [(2, 10)] * 2 and weights == [0.3, 0.3]
  assert jax.tree.structure(batch_stats) == jax.tree.structure(variables["batch_stats"])
  lenet = models.create("lenet5", num_classes=10, dtype=jnp.float32)
  variables = lenet.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32), train=False)
  _, auxiliary, batch_stats = models.train_forward(lenet, variables, np.zeros((1, 28, 28, 1), np.float32))
  assert auxiliary == [] and batch_stats == {}


def test_auxiliary_heads_add_their_weighted_loss():
  """Auxiliary heads report their logits; the step adds weight x their loss, metrics stay the main head's."""
  batch = {
    "image": np.random.default_rng(0).standard_normal((4, 2, 2, 1)).astype(np.float32),
    "label": np.array([0, 1, 2, 0], np.int32),
  }
  changed = {}
  for weight in (0.0, 0.3):
    model = _WithAuxiliaryHead(aux_loss_weight=weight)
    tx = optax.sgd(0.1)
    state = state_lib.init_state(model, tx, (2, 2, 1), seed=0)
    options = step_lib.StepOptions(
      model=model, tx=tx, schedule=lambda _: 0.1, num_classes=3, label_smoothing=0.0, dtype=jnp.float32, seed=0
    )
    new_state, metrics, _ = step_lib.train_step(state, batch, options)
    changed[weight] = not np.allclose(new_state.params["aux"]["kernel"], state.params["aux"]["kernel"])
    main_loss = optax.softmax_cross_entropy_with_integer_labels(
      model.apply({"params": state.params}, batch["image"], train=False), batch["label"]
    ).mean()
    np.testing.assert_allclose(metrics.compute()["loss"], main_loss, rtol=1e-6)
  assert changed == {0.0: False, 0.3: True}


def test_dropout_is_active_only_in_training():
  model = models.create("alexnet_torchvision", num_classes=10, dtype=jnp.float32)
  x = jnp.ones((2, 63, 63, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  train_a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  train_b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(train_a, train_b)
  np.testing.assert_array_equal(model.apply(variables, x, train=False), model.apply(variables, x, train=False))


def test_input_below_the_minimum_names_it():
  config = base_config()
  config.model, config.num_train_steps = "vgg_d", 1
  with pytest.raises(UserError, match="at least 224x224"):
    state_lib.build(config, sharding.create_mesh(jax.devices()[:1]), DatasetInfo(10, (32, 32, 3), 1000, 10))


def test_unknown_model_lists_the_closest_names():
  with pytest.raises(UserError, match="vgg_d, vgg_e|vgg_d_bn"):
    models.create("vgg_dd", num_classes=10, dtype=jnp.float32)


def test_local_response_norm_matches_the_papers_formula():
  from imagenet_train.models.layers import local_response_norm

  a = np.random.default_rng(0).standard_normal((1, 2, 2, 8)).astype(np.float32)
  expected = np.empty_like(a)
  for c in range(8):
    window = a[..., max(0, c - 2) : min(8, c + 3)]
    expected[..., c] = a[..., c] / (2.0 + 1e-4 * np.sum(window**2, axis=-1)) ** 0.75
  np.testing.assert_allclose(local_response_norm(jnp.asarray(a)), expected, rtol=1e-6)
  # Two towers: a window never crosses from one group's channels into the other's.
  grouped = local_response_norm(jnp.asarray(a), groups=2)
  np.testing.assert_allclose(grouped[..., :4], local_response_norm(jnp.asarray(a[..., :4])), rtol=1e-6)


def _count(name, **options):
  model = models.create(name, num_classes=1000, dtype=jnp.float32, **options)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


def test_resnet_shortcut_options_and_prelu():
  resnet18 = models.expected("resnet18").params
  # Option A drops resnet18's three projection shortcuts (1x1 convolution plus BatchNorm).
  projections = sum(c_in * c_out + 2 * c_out for c_in, c_out in ((64, 128), (128, 256), (256, 512)))
  assert _count("resnet18", shortcut="A") == resnet18 - projections
  # Option C adds one to each of the other five blocks, whose width does not change.
  assert _count("resnet18", shortcut="C") == resnet18 + sum(c * c + 2 * c for c in (64, 64, 128, 256, 512))
  # v1 and v1.5 differ in where they stride, not in their parameters.
  assert _count("resnet50", stride_on="1x1") == models.expected("resnet50").params
  # Channel-wise PReLU: one slope per channel at every activation: the stem's, and in each of
  # the two blocks per stage the one inside the branch and the one after the addition.
  assert _count("resnet18", activation="prelu") == resnet18 + 64 + sum(2 * 2 * c for c in (64, 128, 256, 512))
  model = models.create(
    "resnet18", num_classes=10, dtype=jnp.float32, shortcut="A", activation="prelu", stem="small", width=4
  )
  x = jnp.ones((2, 32, 32, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  assert model.apply(variables, x, train=False).shape == (2, 10)


class _Throwaway(nn.Module):
  """A model registered only inside a test: 3x3x3x4 + 4 convolution and 4x10 + 10 classifier
  parameters; 8 * 8 * 4 * 27 + 4 * 10 multiply-adds at its 8x8 native input."""

  num_classes: int
  dtype: Any = jnp.float32
  features: int = 4

  def __post_init__(self):
    models.check_range("features", self.features, low=1)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.relu(nn.Conv(self.features, (3, 3), dtype=self.dtype, name="conv")(x))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x.mean(axis=(1, 2)))


@pytest.fixture
def scratch_registry(monkeypatch):
  """The registry in copies that a test may register into; the project's comes back afterwards."""
  models.names()  # imports the families first, so that the copies hold them
  for table in ("_REGISTRY", "_NATIVE", "_EXPECTED"):
    monkeypatch.setattr(models, table, dict(getattr(models, table)))


def test_a_model_registered_in_its_own_file_is_checked_and_listed_with_no_other_edit(scratch_registry):
  before = models.names()
  figures = dict(
    params=3 * 3 * 3 * 4 + 4 + 4 * 10 + 10,
    multiply_adds=(8 * 8 * 4 * 27 + 4 * 10) * 1e-9,
    small=((8, 8, 3), {"features": 2}),
  )
  models.register("throwaway_for_tests", native_input=(8, 8, 3), native_classes=10, **figures)(_Throwaway)
  assert models.names() == sorted(before + ["throwaway_for_tests"])
  check_expected_figures("throwaway_for_tests")
  assert models.options("throwaway_for_tests") == {"features": 4}
  # The CLI's `models` command prints models.summaries(), which walks models.names() (checked above) when no
  # model is selected; here only the new one is summarised, sparing every other model's trace.
  assert models.summaries(["throwaway_for_tests"]) == [
    ("throwaway_for_tests", figures["params"], 8 * 8 * 4 * 27 + 4 * 10, (8, 8, 3))
  ]
  # Registered without its figures, it fails the registry-walking check by name.
  models.register("throwaway_without_figures_for_tests", native_input=(8, 8, 3))(_Throwaway)
  with pytest.raises(
    AssertionError,
    match="'throwaway_without_figures_for_tests' is registered without its expected params, multiply_adds, small",
  ):
    check_expected_figures("throwaway_without_figures_for_tests")
  # Wrong figures fail too.
  models.register(
    "throwaway_miscounted_for_tests", native_input=(8, 8, 3), native_classes=10, **{**figures, "params": 1}
  )(_Throwaway)
  with pytest.raises(AssertionError, match="'throwaway_miscounted_for_tests' has 162 parameters, registered 1"):
    check_expected_figures("throwaway_miscounted_for_tests")


def test_the_registry_is_the_projects_after_a_scratch_registration():
  assert not [name for name in models.names() if name.startswith("throwaway")]


def test_options_are_the_modules_fields_and_are_checked(scratch_registry):
  with pytest.raises(
    UserError,
    match=r"unknown option 'widht' for model 'resnet18': its options are stride_on, "
    r"shortcut, activation, stem, width, .*; check config.model_options",
  ):
    models.create("resnet18", num_classes=10, dtype=jnp.float32, widht=4)
  # Architecture the registration fixes is no option.
  with pytest.raises(UserError, match="unknown option 'stage_sizes'"):
    models.create("resnet18", num_classes=10, dtype=jnp.float32, stage_sizes=(1, 1, 1, 1))
  with pytest.raises(
    UserError, match="bad option for model 'googlenet': aux_loss_weight must be a number >= 0, not -0.3"
  ):
    models.create("googlenet", num_classes=10, dtype=jnp.float32, aux_loss_weight=-0.3)
  with pytest.raises(
    UserError, match="bad option for model 'resnet50': stem must be one of 'imagenet', 'small' or 'deep'"
  ):
    models.create("resnet50", num_classes=10, dtype=jnp.float32, stem="tiny")
  # Defaults: the module's, or the registration's.
  assert models.options("googlenet")["dropout_rate"] == 0.4
  assert models.options("googlenet_torchvision")["dropout_rate"] == 0.2
  assert models.create("senet154", num_classes=10, dtype=jnp.float32).stem == "deep"

  class Buggy(_Throwaway):
    def __post_init__(self):
      raise TypeError("a bug, not a bad option")

  models.register("buggy_for_tests", params=1, multiply_adds=1.0, small=((8, 8, 3), {}))(Buggy)
  with pytest.raises(TypeError, match="a bug, not a bad option"):
    models.create("buggy_for_tests", num_classes=10, dtype=jnp.float32)
