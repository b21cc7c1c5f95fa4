"""The model registry: exact parameter counts, and every model trains a step at a small size."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from imagenet_train import models, sharding, train
from imagenet_train.data import DatasetInfo
from imagenet_train.defaults import base_config
from imagenet_train.errors import UserError

# Exact counts at the native input with the native class count, auxiliary heads included: from
# the reference file of the papers' facts, which agree with torchvision's where the architecture
# is the same; where a paper gives only a rounded figure, PAPER_ROUNDED checks the rounding.
PARAMETERS = {
    "lenet5": 61_706,
    "alexnet": 60_965_224,
    "alexnet_torchvision": 61_100_840,
    "zfnet": 62_357_608,
    "overfeat_fast": 145_920_872, "overfeat_accurate": 144_656_488,
    # ZFNet's convolutions, then 6x6+3x3+2x2+1x1 bins of 256 maps into FC-4096.
    "sppnet": 62_357_608 + (50 * 256 - 6 * 6 * 256) * 4096,
    "vgg_a": 132_863_336, "vgg_a_lrn": 132_863_336, "vgg_b": 133_047_848, "vgg_c": 133_638_952,
    "vgg_d": 138_357_544, "vgg_e": 143_667_240,
    # torchvision's vgg*_bn: two BatchNorm parameters per convolution channel.
    "vgg_a_bn": 132_868_840, "vgg_b_bn": 133_053_736, "vgg_c_bn": 133_647_400, "vgg_d_bn": 138_365_992,
    "vgg_e_bn": 143_678_248,
    # GoogLeNet's two auxiliary heads hold 6,379,728 parameters; without them 6,998,552 (paper
    # "about 7M") and torchvision's 6,624,904.
    "googlenet": 13_378_280, "googlenet_torchvision": 13_004_888,
    "bn_inception": 11_285_224,
    "inception_v3": 27_161_264,  # torchvision's count, with its auxiliary head
    "inception_v4": 42_679_816, "inception_resnet_v2": 55_843_464,  # the released ports, 1000 classes
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904, "resnext101_32x4d": 44_177_704, "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "se_resnet50": 28_088_024, "se_resnet101": 49_326_872, "se_resnet152": 66_821_848,
    "se_resnext50_32x4d": 27_559_896, "se_resnext101_32x4d": 48_955_416,
    "senet154": 115_088_984,
    "densenet121": 7_978_856, "densenet169": 14_149_480, "densenet201": 20_013_928, "densenet161": 28_681_000,
    "densenet264": 33_337_704,
    # Counted from this implementation (no stored source gives model C's parameters); its
    # multiply-adds below agree with the paper's complexity row.
    "prelu_net_c": 330_623_944,
}

# Millions of parameters as the papers round them (without auxiliary heads where marked).
PAPER_ROUNDED = {"zfnet": (62.4, None), "googlenet": (7.0, ("googlenet", {"aux_heads": False})),
                 "bn_inception": (11.3, None), "overfeat_fast": (145.9, None), "overfeat_accurate": (144.7, None)}

# Multiply-adds (G) of one forward pass at the native input, without auxiliary heads: the
# reference file's counted figures and torchvision's "GFLOPS"; papers' own figures where marked.
MULTIPLY_ADDS = {
    "lenet5": 416_520e-9,  # by hand: 117,600 + 240,000 + 48,000 + 10,080 + 840
    "alexnet": 0.724, "alexnet_torchvision": 0.714, "zfnet": 1.17,
    "sppnet": 1.17 + (50 * 256 - 6 * 6 * 256) * 4096e-9,  # ZFNet with FC6 reading the pyramid's 50 bins
    "overfeat_fast": 2.801, "overfeat_accurate": 5.355,
    "vgg_a": 7.609, "vgg_a_lrn": 7.609, "vgg_a_bn": 7.609, "vgg_b": 11.308, "vgg_b_bn": 11.308, "vgg_c": 11.771,
    "vgg_c_bn": 11.771, "vgg_d": 15.470, "vgg_d_bn": 15.470, "vgg_e": 19.632, "vgg_e_bn": 19.632,
    "googlenet": 1.58, "googlenet_torchvision": 1.498, "bn_inception": 2.03,  # SENet paper's figure
    "inception_v3": 5.713,
    "inception_v4": 12.28, "inception_resnet_v2": 13.16,  # timm's figures for the same ports
    "resnet18": 1.814, "resnet34": 3.664, "resnet50": 4.089, "resnet101": 7.801, "resnet152": 11.514,
    "resnext50_32x4d": 4.230, "resnext101_32x4d": 7.97, "resnext101_32x8d": 16.414, "resnext101_64x4d": 15.46,
    # SENet paper, Table 2 (v1 striding for SE-ResNet), and timm's figure for SENet-154.
    "se_resnet50": 3.87, "se_resnet101": 7.60, "se_resnet152": 11.32, "se_resnext50_32x4d": 4.25,
    "se_resnext101_32x4d": 8.00, "senet154": 20.77,
    "densenet121": 2.834, "densenet169": 3.360, "densenet201": 4.291, "densenet161": 7.728, "densenet264": 5.752,
    "prelu_net_c": 53.0,  # He et al. 2015, Table 3 (arXiv v1 text): model C, 5.30e10
}

# Small inputs and narrow widths that still run every layer of the real code path.
SMALL = {
    "lenet5": ((28, 28, 1), {}),
    "alexnet": ((67, 67, 3), {}),
    "alexnet_torchvision": ((63, 63, 3), {}),
    "vgg": ((224, 224, 3), {"width_multiplier": 1 / 64}),
    "resnet": ((32, 32, 3), {"stem": "small", "width": 4}),
    "resnext": ((32, 32, 3), {"stem": "small", "width": 16}),  # 16: each group keeps a channel
    "se": ((32, 32, 3), {"stem": "small", "width": 16}),  # width 16: SE's C/16 must be at least 1
    "senet154": ((32, 32, 3), {"width": 32}),  # 64 groups
    "googlenet": ((32, 32, 3), {}),
    "bn_inception": ((32, 32, 3), {}),
    "inception": ((75, 75, 3), {}),
    # Every kind of layer, with fewer of them: XLA unrolls DenseNet-121's 58 dense layers.
    "densenet": ((32, 32, 3), {"width_multiplier": 1 / 8, "block_sizes": (2, 2, 2, 2)}),
    "zfnet": ((63, 63, 3), {}),
    "sppnet": ((39, 39, 3), {}),
    "overfeat": ((231, 231, 3), {"width_multiplier": 1 / 32}),
    "prelu": ((32, 32, 3), {"width_multiplier": 1 / 16}),
}

# The suite compiles a train step for one model of each kind of layer; compiling all 44 on a
# 2-core CPU would take most of an hour. The others are traced (every shape, the loss, the
# update) here, and compiled and run by `make test-slow` (the `slow` marker).
COMPILED = {"lenet5", "alexnet", "alexnet_torchvision", "zfnet", "sppnet", "vgg_c_bn", "resnet18", "se_resnet50",
            "densenet121", "googlenet"}
# Models whose eval-mode forward pass is also compiled and run twice (dropout, BatchNorm, LRN,
# auxiliary heads, spatial pyramid pooling between them).
EVAL_CHECKED = {"alexnet", "vgg_c_bn", "resnet18", "googlenet", "sppnet"}


def test_every_registered_model_has_its_exact_parameter_count_and_multiply_adds():
  rows = models.summaries()
  assert {name: params for name, params, _, _ in rows} == PARAMETERS
  assert set(MULTIPLY_ADDS) == set(PARAMETERS)
  for name, _, multiply_adds, _ in rows:
    assert abs(multiply_adds / 1e9 - MULTIPLY_ADDS[name]) <= 0.01 * MULTIPLY_ADDS[name], (name, multiply_adds)
  for name, (millions, variant) in PAPER_ROUNDED.items():
    count = PARAMETERS[name] if variant is None else models.parameter_count(
        models.abstract_variables(variant[0], **variant[1])[1])
    assert round(count / 1e6, 1) == millions, (name, count)


def _small(name):
  return SMALL.get(name) or SMALL.get(name.split("_")[0].rstrip("0123456789")) or SMALL[name.rstrip("0123456789")]


def _train_step(name, compile_and_run):
  """One train step at a small size, compiled and run, or only traced."""
  shape, options = _small(name)
  config = base_config()
  config.model, config.dtype, config.batch_size, config.num_train_steps = name, "float32", 4, 10
  config.model_options.update(options)
  mesh = sharding.create_mesh(jax.devices()[:1])
  setup = train.build(config, mesh, DatasetInfo(10, shape, num_train_examples=40, num_eval_examples=4))
  rng = np.random.default_rng(0)
  batch = {"image": rng.standard_normal((4, *shape)).astype(np.float32),
           "label": rng.integers(0, 10, 4).astype(np.int32)}
  step = train.jit_train_step(setup)
  if not compile_and_run:
    new_state, metrics, _ = jax.eval_shape(step, setup.abstract_state, batch)
    assert jax.tree.structure(new_state) == jax.tree.structure(setup.abstract_state)
    assert metrics.loss.total.shape == ()
    return
  init = jax.jit(lambda: train.init_state(setup.model, setup.tx, shape, seed=0), out_shardings=setup.state_sharding)
  new_state, metrics, _ = step(init(), sharding.to_global(batch, mesh))
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


@pytest.mark.parametrize("name", sorted(set(PARAMETERS) - COMPILED))
def test_model_train_step_traces(name):
  _train_step(name, compile_and_run=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(PARAMETERS) - COMPILED))
def test_model_trains_a_step_compiled(name):
  _train_step(name, compile_and_run=True)


def test_auxiliary_heads_add_their_weighted_loss():
  """GoogLeNet-style heads sow logits; the step adds weight x their loss, metrics stay the main head's."""

  class WithAuxiliaryHead(nn.Module):
    num_classes: int = 3
    aux_loss_weight: float = 0.3

    @nn.compact
    def __call__(self, x, *, train):
      x = x.reshape(x.shape[0], -1)
      if train or self.is_initializing():
        self.sow("aux_logits", "logits", nn.Dense(self.num_classes, name="aux")(x))
      return nn.Dense(self.num_classes, name="main")(x)

  batch = {"image": np.random.default_rng(0).standard_normal((4, 2, 2, 1)).astype(np.float32),
           "label": np.array([0, 1, 2, 0], np.int32)}
  changed = {}
  for weight in (0.0, 0.3):
    model = WithAuxiliaryHead(aux_loss_weight=weight)
    tx = optax.sgd(0.1)
    state = train.init_state(model, tx, (2, 2, 1), seed=0)
    new_state, metrics, _ = train.train_step(state, batch, model=model, tx=tx, schedule=lambda _: 0.1,
                                             num_classes=3, label_smoothing=0.0, dtype=jnp.float32, seed=0)
    changed[weight] = not np.allclose(new_state.params["aux"]["kernel"], state.params["aux"]["kernel"])
    main_loss = optax.softmax_cross_entropy_with_integer_labels(
        model.apply({"params": state.params}, batch["image"], train=False), batch["label"]).mean()
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
    train.build(config, sharding.create_mesh(jax.devices()[:1]), DatasetInfo(10, (32, 32, 3), 1000, 10))


def test_unknown_model_lists_the_closest_names():
  with pytest.raises(UserError, match="vgg_d, vgg_e|vgg_d_bn"):
    models.create("vgg_dd", num_classes=10, dtype=jnp.float32)


def test_local_response_norm_matches_the_papers_formula():
  from imagenet_train.models.layers import local_response_norm

  a = np.random.default_rng(0).standard_normal((1, 2, 2, 8)).astype(np.float32)
  expected = np.empty_like(a)
  for c in range(8):
    window = a[..., max(0, c - 2):min(8, c + 3)]
    expected[..., c] = a[..., c] / (2.0 + 1e-4 * np.sum(window**2, axis=-1))**0.75
  np.testing.assert_allclose(local_response_norm(jnp.asarray(a)), expected, rtol=1e-6)
  # Two towers: a window never crosses from one group's channels into the other's.
  grouped = local_response_norm(jnp.asarray(a), groups=2)
  np.testing.assert_allclose(grouped[..., :4], local_response_norm(jnp.asarray(a[..., :4])), rtol=1e-6)


def _count(name, **options):
  model = models.create(name, num_classes=1000, dtype=jnp.float32, **options)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


def test_resnet_shortcut_options_and_prelu():
  # Option A drops resnet18's three projection shortcuts (1x1 convolution plus BatchNorm).
  projections = sum(c_in * c_out + 2 * c_out for c_in, c_out in ((64, 128), (128, 256), (256, 512)))
  assert _count("resnet18", shortcut="A") == PARAMETERS["resnet18"] - projections
  # Option C adds one to each of the other five blocks, whose width does not change.
  assert _count("resnet18", shortcut="C") == PARAMETERS["resnet18"] + sum(
      c * c + 2 * c for c in (64, 64, 128, 256, 512))
  # v1 and v1.5 differ in where they stride, not in their parameters.
  assert _count("resnet50", stride_on="1x1") == PARAMETERS["resnet50"]
  # Channel-wise PReLU: one slope per channel at every activation: the stem's, and in each of
  # the two blocks per stage the one inside the branch and the one after the addition.
  assert _count("resnet18", activation="prelu") == PARAMETERS["resnet18"] + 64 + sum(
      2 * 2 * c for c in (64, 128, 256, 512))
  model = models.create("resnet18", num_classes=10, dtype=jnp.float32, shortcut="A", activation="prelu",
                        stem="small", width=4)
  x = jnp.ones((2, 32, 32, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  assert model.apply(variables, x, train=False).shape == (2, 10)
