"""Models torchvision also ships give its logits when given its weights, through import-weights.

Runs where torchvision is installed (`make test-torchvision` builds such an environment); the
default test environment has no PyTorch, so there it is skipped with the reason shown.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imagenet_train import models, weights

torch = pytest.importorskip("torch", reason="PyTorch is not installed: run `make test-torchvision`")
torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed: run `make test-torchvision`")

# This project's name -> (torchvision constructor, its keyword arguments). Auxiliary heads are
# kept on both sides so that every imported tensor has its counterpart.
SHARED = {
  "alexnet_torchvision": ("alexnet", {}),
  "vgg_a": ("vgg11", {}),
  "vgg_b": ("vgg13", {}),
  "vgg_d": ("vgg16", {}),
  "vgg_e": ("vgg19", {}),
  "vgg_a_bn": ("vgg11_bn", {}),
  "vgg_b_bn": ("vgg13_bn", {}),
  "vgg_d_bn": ("vgg16_bn", {}),
  "vgg_e_bn": ("vgg19_bn", {}),
  "resnet18": ("resnet18", {}),
  "resnet34": ("resnet34", {}),
  "resnet50": ("resnet50", {}),
  "resnet101": ("resnet101", {}),
  "resnet152": ("resnet152", {}),
  "resnext50_32x4d": ("resnext50_32x4d", {}),
  "resnext101_32x8d": ("resnext101_32x8d", {}),
  "resnext101_64x4d": ("resnext101_64x4d", {}),
  "googlenet_torchvision": ("googlenet", {"aux_logits": True, "transform_input": False, "init_weights": True}),
  "inception_v3": ("inception_v3", {"aux_logits": True, "transform_input": False, "init_weights": True}),
  "densenet121": ("densenet121", {}),
  "densenet161": ("densenet161", {}),
  "densenet169": ("densenet169", {}),
  "densenet201": ("densenet201", {}),
}


def _randomise_statistics(module, generator):
  """Fresh BatchNorm layers are the identity in eval mode; random statistics make the test bite."""
  for layer in module.modules():
    if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
      layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=generator) * 0.1)
      layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=generator) + 0.5)
      layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) + 0.5)
      layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.1)


@pytest.mark.parametrize("name", sorted(SHARED))
def test_imported_torchvision_weights_give_torchvision_logits(name):
  torch_name, kwargs = SHARED[name]
  generator = torch.Generator().manual_seed(0)
  torch.manual_seed(0)
  reference = getattr(torchvision.models, torch_name)(weights=None, num_classes=1000, **kwargs).eval()
  with torch.no_grad():
    _randomise_statistics(reference, generator)
  state_dict = {
    key: value.detach().numpy() for key, value in reference.state_dict().items() if value.is_floating_point()
  }

  shape, num_classes = models.native_input(name)
  model = models.create(name, num_classes=num_classes, dtype=jnp.float32)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False))
  variables = weights.to_variables(state_dict, abstract, model=name, source=f"torchvision {torch_name}")

  images = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  logits = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
  scale = np.abs(expected).max()
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * scale)
