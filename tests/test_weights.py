"""Importing PyTorch state_dicts: layouts, by-name matching, mismatches, and the CLI round trip."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from imagenet_train import checkpoint, models, results, weights
from imagenet_train import state as state_lib
from imagenet_train.errors import UserError

from test_bad_input import assert_user_error, run_cli, train_args


def _variables(name, shape, **options):
  model = models.create(name, num_classes=10, dtype=jnp.float32, **options)
  return model, model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False)


def test_layouts_follow_pytorch_and_round_trip():
  _, variables = _variables("resnet18", (32, 32, 3), stem="small", width=4)
  state_dict = weights.to_state_dict(variables)
  # PyTorch's names and layouts: OIHW convolutions, (out, in) linear weights, BN buffers.
  assert state_dict["conv1.weight"].shape == (4, 3, 3, 3)
  assert state_dict["layer2.0.downsample.0.weight"].shape == (8, 4, 1, 1)
  assert state_dict["layer1.0.bn1.running_var"].shape == (4,)
  assert state_dict["fc.weight"].shape == (10, 32)
  np.testing.assert_array_equal(state_dict["fc.weight"], np.asarray(variables["params"]["fc"]["kernel"]).T)
  restored = weights.to_variables(state_dict, jax.tree.map(np.zeros_like, variables), model="resnet18", source="f")
  jax.tree.map(np.testing.assert_array_equal, restored, {k: variables[k] for k in ("params", "batch_stats")})


def test_fully_connected_weights_load_into_a_convolutional_head():
  """VGG holds FC6 as a 7x7 convolution; PyTorch's Linear reads the (C, H, W)-flattened map."""
  model, variables = _variables("vgg_a", (224, 224, 3), width_multiplier=1 / 64)
  kernel = np.asarray(variables["params"]["classifier.0"]["kernel"])  # (7, 7, 8, 64)
  state_dict = weights.to_state_dict(variables)
  state_dict["classifier.0.weight"] = state_dict["classifier.0.weight"].reshape(kernel.shape[-1], -1)
  restored = weights.to_variables(state_dict, variables, model="vgg_a", source="f")
  np.testing.assert_array_equal(restored["params"]["classifier.0"]["kernel"], kernel)
  x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
  np.testing.assert_array_equal(model.apply(restored, x, train=False), model.apply(variables, x, train=False))


def test_mismatches_name_the_first_tensor_and_both_shapes():
  _, variables = _variables("lenet5", (28, 28, 1))
  state_dict = weights.to_state_dict(variables)
  wrong = {**state_dict, "c3.weight": np.zeros((16, 6, 3, 3), np.float32)}
  with pytest.raises(
    UserError,
    match=r"tensor c3.weight is \(16, 6, 3, 3\) in f.safetensors but lenet5 needs "
    r"\(16, 6, 5, 5\)",
  ):
    weights.to_variables(wrong, variables, model="lenet5", source="f.safetensors")
  missing = {key: value for key, value in state_dict.items() if key != "f6.bias"}
  with pytest.raises(UserError, match=r"has no tensor f6.bias \(84,\)"):
    weights.to_variables(missing, variables, model="lenet5", source="f")
  with pytest.raises(UserError, match=r"holds fc.weight \(10, 84\), which lenet5 does not have"):
    weights.to_variables(
      {**state_dict, "fc.weight": np.zeros((10, 84), np.float32)}, variables, model="lenet5", source="f"
    )


def test_keep_init_leaves_a_new_classifier_at_its_initial_values():
  _, variables = _variables("lenet5", (28, 28, 1))
  source = weights.to_state_dict(jax.tree.map(lambda a: a + 1, variables))
  source["output.weight"] = np.zeros((1000, 84), np.float32)  # another dataset's classifier
  restored = weights.to_variables(source, variables, model="lenet5", source="f", keep_init=r"^output\.")
  np.testing.assert_array_equal(restored["params"]["output"]["kernel"], variables["params"]["output"]["kernel"])
  np.testing.assert_array_equal(restored["params"]["c1"]["kernel"], variables["params"]["c1"]["kernel"] + 1)


def test_unreadable_files_are_refused(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    weights.read_state_dict(str(tmp_path / "absent.safetensors"))
  (tmp_path / "weights.npz").write_bytes(b"x")
  with pytest.raises(UserError, match="neither .safetensors nor .pth"):
    weights.read_state_dict(str(tmp_path / "weights.npz"))
  (tmp_path / "cut.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
  with pytest.raises(UserError, match="cannot read .*cut.safetensors as safetensors"):
    weights.read_state_dict(str(tmp_path / "cut.safetensors"))


def test_cli_imports_a_state_dict_that_evaluates_like_its_source(config, tmp_path):
  """Train two steps, write the state_dict PyTorch would hold, import it: same eval metrics."""
  source, imported = tmp_path / "source", tmp_path / "imported"
  returncode, _, stderr = run_cli(*train_args(config, source))
  assert returncode == 0, stderr[-3000:]
  setup = state_lib.prepare(config)
  checkpointer = checkpoint.Checkpointer(str(source), keep=2, enable_async=False)
  state = checkpointer.restore(checkpointer.latest_step(), setup.abstract_state)
  checkpointer.close()
  file = tmp_path / "lenet5.safetensors"
  save_file(weights.to_state_dict({"params": state.params, "batch_stats": state.batch_stats}), str(file))

  data_flags = train_args(config, imported)[2:]
  args = (
    "import-weights",
    "--config=configs/default.py",
    "--model=lenet5",
    f"--from={file}",
    f"--out={imported}",
    *[flag for flag in data_flags if not flag.startswith("--workdir")],
  )
  returncode, _, stderr = run_cli(*args)
  assert returncode == 0, stderr[-3000:]
  evaluated = {}
  for workdir, step in ((source, 2), (imported, 0)):
    returncode, _, stderr = run_cli("evaluate", *train_args(config, workdir)[1:])
    assert returncode == 0, stderr[-3000:]
    evaluated[workdir] = results.read(workdir / f"eval_center_step_{step}.json").parameters["raw"]
  for key in ("log_loss", "top1_error", "top5_error"):
    assert abs(getattr(evaluated[imported], key) - getattr(evaluated[source], key)) < 1e-4, key

  # A second import into the same workdir would overwrite it: refused, nothing changed.
  returncode, last_line, stderr = run_cli(*args)
  assert_user_error(returncode, last_line, stderr, "already holds checkpoints", "empty --out")

  # A file whose tensor does not fit names it with both shapes, and leaves no checkpoint behind.
  bad = tmp_path / "bad.safetensors"
  save_file(
    {
      **weights.to_state_dict({"params": state.params, "batch_stats": state.batch_stats}),
      "c1.weight": np.zeros((6, 1, 3, 3), np.float32),
    },
    str(bad),
  )
  other = tmp_path / "other"
  returncode, last_line, stderr = run_cli(
    *[arg.replace(f"--from={file}", f"--from={bad}").replace(f"--out={imported}", f"--out={other}") for arg in args]
  )
  assert_user_error(returncode, last_line, stderr, "c1.weight is (6, 1, 3, 3)", "needs (6, 1, 5, 5)")
  assert not (other / "checkpoints").exists() or not any((other / "checkpoints").iterdir())


def test_pth_files_are_read_without_unpickling_objects(tmp_path):
  torch = pytest.importorskip("torch", reason="PyTorch is not installed: run `make test-torchvision`")
  _, variables = _variables("lenet5", (28, 28, 1))
  state_dict = weights.to_state_dict(variables)
  torch.save(
    {"model": {key: torch.from_numpy(value) for key, value in state_dict.items()}, "epoch": 3},
    tmp_path / "checkpoint.pth",
  )
  read = weights.read_state_dict(str(tmp_path / "checkpoint.pth"))  # the reference scripts' wrapper
  assert read.keys() == state_dict.keys()
  np.testing.assert_array_equal(read["c3.weight"], state_dict["c3.weight"])

  # torchvision's reference scripts also pickle their argparse.Namespace: weights_only refuses it.
  torch.save({"model": {}, "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pth")
  with pytest.raises(UserError, match="cannot read .*pickled.pth as a PyTorch state_dict"):
    weights.read_state_dict(str(tmp_path / "pickled.pth"))
