"""PyTorch state_dicts in and out of Flax variables, matched by name.

A model that torchvision also ships names its Flax modules after torchvision's, so joining a
variable's module path with "." gives the state_dict key: ("layer1.0", "conv1", "kernel") is
`layer1.0.conv1.weight`. Only layouts differ: convolution kernels are HWIO here and OIHW in
PyTorch, dense kernels (in, out) here and (out, in) there, and a fully connected layer held as
a convolution (VGG's FC6 as a 7x7 convolution) takes PyTorch's flattened (C, H, W) columns.

Files are read as `.safetensors`, or as `.pth`/`.pt` through `torch.load(weights_only=True)`
when PyTorch is installed; never as plain pickle.
"""

import os
import re

import jax
import numpy as np

from imagenet_train import checkpoint as checkpoint_lib
from imagenet_train import state as state_lib
from imagenet_train import workdir_lock
from imagenet_train.errors import UserError

# Flax leaf name -> PyTorch parameter or buffer name. A PReLU's slope is nn.PReLU's `weight`.
_TORCH_LEAF = {
  "kernel": "weight",
  "scale": "weight",
  "slope": "weight",
  "bias": "bias",
  "mean": "running_mean",
  "var": "running_var",
}
# Buffers PyTorch keeps that have no counterpart here.
_IGNORED_SUFFIXES = (".num_batches_tracked",)


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The floating-point tensors of a `.safetensors` or `.pth` file, by state_dict key."""
  if not os.path.isfile(path):
    raise UserError(f"weights file {path} does not exist: pass --from=FILE.safetensors or FILE.pth")
  extension = os.path.splitext(path)[1].lower()
  if extension == ".safetensors":
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
      tensors = load_file(path)
    except (SafetensorError, ValueError, OSError) as error:
      raise UserError(f"cannot read {path} as safetensors ({error}): is the file complete?") from None
  elif extension in (".pth", ".pt"):
    tensors = _read_torch(path)
  else:
    raise UserError(f"weights file {path} is neither .safetensors nor .pth/.pt: convert it to one of those")
  tensors = {
    key.removeprefix("module."): value for key, value in tensors.items() if not key.endswith(_IGNORED_SUFFIXES)
  }
  if not tensors:
    raise UserError(f"{path} holds no tensors: pass the file of a model's state_dict")
  return tensors


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError:
    raise UserError(
      f"reading {path} needs PyTorch: `pip install torch`, or save the state_dict with "
      "safetensors.torch.save_file and pass the .safetensors file"
    ) from None
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # torch raises UnpicklingError, RuntimeError or others for bad files
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise UserError(
      f"cannot read {path} as a PyTorch state_dict ({first_line}): save model.state_dict() "
      "with torch.save, or convert it to .safetensors"
    ) from None
  # Training scripts (torchvision's references among them) wrap the state_dict with optimizer state.
  for wrapper in ("model", "state_dict", "model_state_dict"):
    if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
      loaded = loaded[wrapper]
  if not isinstance(loaded, dict):
    raise UserError(f"{path} holds a {type(loaded).__name__}, not a state_dict: save model.state_dict()")
  return {
    key: value.detach().to(torch.float32).numpy()
    for key, value in loaded.items()
    if torch.is_tensor(value) and value.is_floating_point()
  }


def _entries(variables) -> list[tuple[str, tuple, object]]:
  """(torch key, Flax path, abstract or concrete leaf) for every parameter and statistic."""
  entries = []
  for collection in ("params", "batch_stats"):
    flat = jax.tree_util.tree_flatten_with_path(variables.get(collection, {}))[0]
    for path, leaf in flat:
      names = tuple(entry.key for entry in path)
      entries.append((_torch_key(names), (collection, *names), leaf))
  return entries


def _torch_key(names: tuple[str, ...]) -> str:
  if names[-1] not in _TORCH_LEAF:
    raise ValueError(f"no PyTorch name for the variable {'/'.join(names)}")
  return ".".join(names[:-1] + (_TORCH_LEAF[names[-1]],))


def _to_torch_layout(leaf_name: str, array: np.ndarray) -> np.ndarray:
  if leaf_name == "kernel" and array.ndim == 4:
    return np.transpose(array, (3, 2, 0, 1))
  if leaf_name == "kernel" and array.ndim == 2:
    return array.T
  return array


def _torch_shape(leaf_name: str, shape: tuple) -> tuple:
  return _to_torch_layout(leaf_name, np.empty(shape, np.uint8)).shape


def _from_torch_layout(leaf_name: str, tensor: np.ndarray, shape: tuple) -> np.ndarray | None:
  """`tensor` in Flax's layout for a leaf of `shape`, or None when it cannot fit."""
  if leaf_name == "kernel" and len(shape) == 4 and tensor.ndim == 2 and tensor.size == np.prod(shape):
    # A fully connected layer held as a convolution over the (C, H, W)-flattened map it reads.
    height, width, channels, features = shape
    tensor = tensor.reshape(features, channels, height, width)
  converted = (
    np.transpose(tensor, (2, 3, 1, 0))
    if leaf_name == "kernel" and tensor.ndim == 4
    else (tensor.T if leaf_name == "kernel" and tensor.ndim == 2 else tensor)
  )
  return converted if converted.shape == tuple(shape) else None


def to_variables(tensors: dict[str, np.ndarray], variables, *, model: str, source: str, keep_init: str | None = None):
  """`variables` with every leaf replaced by its tensor from `tensors`.

  Leaves whose PyTorch key matches the regular expression `keep_init` keep their values from
  `variables` (a new classifier for fine-tuning, say), and file tensors it matches are ignored.
  The first tensor that is missing, unexpected or of the wrong shape stops the import.
  """
  keep = re.compile(keep_init) if keep_init else None
  kept = lambda key: keep is not None and keep.search(key) is not None
  entries = _entries(variables)
  expected = {key: (path, leaf) for key, path, leaf in entries}
  hint = "pass --keep_init=REGEX to keep the initial values of the tensors it matches"
  for key, tensor in tensors.items():
    if kept(key):
      continue
    if key not in expected:
      raise UserError(
        f"{source} holds {key} {tuple(tensor.shape)}, which {model} does not have: is it a file "
        f"of another model? ({hint})"
      )
    path, leaf = expected[key]
    if _from_torch_layout(path[-1], tensor, leaf.shape) is None:
      raise UserError(
        f"tensor {key} is {tuple(tensor.shape)} in {source} but {model} needs "
        f"{_torch_shape(path[-1], leaf.shape)} (PyTorch layout): {hint}"
      )
  for key, path, leaf in entries:
    if key not in tensors and not kept(key):
      raise UserError(f"{source} has no tensor {key} {_torch_shape(path[-1], leaf.shape)} that {model} needs: {hint}")

  def replace(path, leaf):
    names = tuple(entry.key for entry in path)
    key = _torch_key(names)
    if kept(key):
      return leaf
    return _from_torch_layout(names[-1], tensors[key], leaf.shape).astype(leaf.dtype)

  return {
    collection: jax.tree_util.tree_map_with_path(replace, variables[collection])
    for collection in ("params", "batch_stats")
    if collection in variables
  }


def to_state_dict(variables) -> dict[str, np.ndarray]:
  """Flax variables as a PyTorch-layout state_dict, the inverse of `to_variables`."""
  return {
    key: np.ascontiguousarray(_to_torch_layout(path[-1], np.asarray(leaf, np.float32)))
    for key, path, leaf in _entries(variables)
  }


def import_weights(config, source: str, workdir: str, keep_init: str | None = None) -> int:
  """Writes a step-0 checkpoint of `config` holding the PyTorch weights in `source` to `workdir`.

  `evaluate` then scores the weights as they are, and `train` fine-tunes from them. Returns the
  number of tensors imported."""
  tensors = read_state_dict(source)  # a bad file fails before anything is created
  setup = state_lib.prepare(config)  # the config and the data checked before the workdir is touched
  checkpoint_lib.check_workdir(workdir)
  with workdir_lock.hold(workdir, "import-weights"):
    return _write_imported(config, setup, tensors, source, workdir, keep_init)


def _write_imported(config, setup, tensors: dict, source: str, workdir: str, keep_init: str | None) -> int:
  checkpointer = checkpoint_lib.Checkpointer(workdir, keep=config.keep_checkpoints, enable_async=False)
  try:
    if checkpointer.latest_step() is not None:
      raise UserError(f"{checkpointer.directory} already holds checkpoints: pass an empty --out directory")
    state = jax.device_get(setup.initial_state())
    variables = to_variables(
      tensors,
      {"params": state.params, "batch_stats": state.batch_stats},
      model=config.model,
      source=source,
      keep_init=keep_init,
    )
    state = state.replace(params=variables["params"], batch_stats=variables.get("batch_stats", {}))
    meta = {**checkpoint_lib.run_meta(setup, 0), "imported_from": os.path.abspath(source)}
    checkpointer.save(0, jax.device_put(state, setup.state_sharding), meta, force=True)
    checkpointer.wait()
  finally:
    checkpointer.close()
  return len(tensors)
