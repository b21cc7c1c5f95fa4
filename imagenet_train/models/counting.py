"""Multiply-adds of a model's forward pass, counted from its traced program without running it.

Counts what the papers and torchvision's "GFLOPS" count: one per multiply-accumulate in
convolutions and matrix products. Pooling, normalisation and activations are not counted.
"""

import math

import jax
from jax.extend import core as jax_core


def _multiply_adds(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      kernel = eqn.invars[1].aval.shape
      out_features = kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
      # Each output element accumulates over the kernel's window and its group's input channels.
      total += math.prod(eqn.outvars[0].aval.shape) * (math.prod(kernel) // out_features)
    elif name == "dot_general":
      (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contracting)
    elif name == "cond":
      total += max(_multiply_adds(branch.jaxpr) for branch in eqn.params["branches"])
    else:
      repeats = eqn.params.get("length", 1) if name == "scan" else 1
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
          if isinstance(sub, jax_core.ClosedJaxpr):
            total += repeats * _multiply_adds(sub.jaxpr)
          elif isinstance(sub, jax_core.Jaxpr):
            total += repeats * _multiply_adds(sub)
  return total


def multiply_adds(model, variables, input_shape) -> int:
  """Multiply-adds of one eval-mode forward pass of `model` on one image of `input_shape`."""
  image = jax.ShapeDtypeStruct((1, *input_shape), jax.numpy.float32)
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, image)
  return _multiply_adds(jaxpr.jaxpr)
