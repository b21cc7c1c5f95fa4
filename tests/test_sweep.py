"""Sweeps and reports without training: sweep files, overrides checked against the config, run names,
command-line flags that reproduce a run, and the markdown table of finished runs."""

import json

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from imagenet_train import report, results, sweep
from imagenet_train.errors import UserError

from conftest import REPO, load_config

EXAMPLE = str(REPO / "sweeps" / "lr_batch.py")


def test_example_sweep_expands_to_four_runs(tmp_path):
  config = load_config().lock()  # as the CLI's config_flags gives it
  runs = sweep.expand(config, sweep.load_sweep(EXAMPLE), str(tmp_path), "lr_batch")
  assert [run.overrides for run in runs] == [
    {"learning_rate": 0.05, "batch_size": 128},
    {"learning_rate": 0.05, "batch_size": 256},
    {"learning_rate": 0.1, "batch_size": 128},
    {"learning_rate": 0.1, "batch_size": 256},
  ]
  assert runs[0].name == "learning_rate=0.05,batch_size=128"
  assert runs[0].workdir == str(tmp_path / "lr_batch" / "00_learning_rate=0.05,batch_size=128")
  assert len({run.name for run in runs}) == len({run.workdir for run in runs}) == 4
  assert [(run.config.learning_rate, run.config.batch_size) for run in runs] == [
    (0.05, 128),
    (0.05, 256),
    (0.1, 128),
    (0.1, 256),
  ]
  assert runs[3].config.is_locked and config.learning_rate == 0.1 and config.batch_size == 256  # a copy

  sweep.write_run_info(runs[1])
  assert json.loads((tmp_path / "lr_batch" / f"01_{runs[1].name}" / "sweep.json").read_text()) == {
    "name": runs[1].name,
    "overrides": runs[1].overrides,
    "sweep": "lr_batch",
  }


def test_product_zipped_chain():
  lr, batch = sweep.axis("learning_rate", [0.1, 0.2]), sweep.axis("batch_size", [32, 64])
  assert lr == [{"learning_rate": 0.1}, {"learning_rate": 0.2}]
  assert sweep.product(lr, batch) == [
    {"learning_rate": 0.1, "batch_size": 32},
    {"learning_rate": 0.1, "batch_size": 64},
    {"learning_rate": 0.2, "batch_size": 32},
    {"learning_rate": 0.2, "batch_size": 64},
  ]
  assert sweep.zipped(lr, batch) == [{"learning_rate": 0.1, "batch_size": 32}, {"learning_rate": 0.2, "batch_size": 64}]
  assert sweep.chain(lr, batch) == lr + batch
  assert sweep.axis("learning_rate", np.array([0.5]))[0]["learning_rate"].__class__ is float  # np.float64 unwrapped

  with pytest.raises(ValueError, match="lengths 2, 3"):
    sweep.zipped(lr, sweep.axis("batch_size", [32, 64, 128]))
  with pytest.raises(ValueError, match="learning_rate twice"):
    sweep.product(lr, sweep.axis("learning_rate", [0.3]))


def test_load_sweep_errors(tmp_path):
  with pytest.raises(UserError, match="cannot find sweep file .*missing.py"):
    sweep.load_sweep(str(tmp_path / "missing.py"))
  (tmp_path / "empty.py").write_text("RUNS = []\n")
  with pytest.raises(UserError, match="empty.py defines no get_sweep"):
    sweep.load_sweep(str(tmp_path / "empty.py"))
  (tmp_path / "uneven.py").write_text(
    "from imagenet_train.sweep import axis, zipped\n"
    "def get_sweep():\n"
    "  return zipped(axis('seed', [0, 1]), axis('batch_size', [8]))\n"
  )
  with pytest.raises(UserError, match="uneven.py: zipped needs axes of equal length; got lengths 2, 1"):
    sweep.load_sweep(str(tmp_path / "uneven.py"))


def test_check_overrides_names_the_unknown_field():
  config = load_config()
  sweep.check_overrides(
    config,
    [
      {
        "optimizer.sgd.momentum": 0.8,
        "data.pp_train": "decode(1)",
        "model_options.pooling": "avg",
        "data.data_dir": "/tmp",
      }
    ],
  )
  with pytest.raises(UserError, match="overrides learning_rat, which the config lacks.*did you mean learning_rate"):
    sweep.check_overrides(config, [{"batch_size": 8}, {"learning_rat": 0.1}])
  with pytest.raises(UserError, match="overrides optimizer.sgd.momentm, which the config lacks"):
    sweep.check_overrides(config, [{"optimizer.sgd.momentm": 0.8}])
  with pytest.raises(UserError, match="overrides learning_rate.decay, which the config lacks"):
    sweep.check_overrides(config, [{"learning_rate.decay": 0.8}])
  with pytest.raises(UserError, match=r"sets batch_size to 'big' \(str\), but the config's batch_size is a int"):
    sweep.check_overrides(config, [{"batch_size": "big"}])
  with pytest.raises(UserError, match="lists the run .* twice"):
    sweep.check_overrides(config, [{"seed": 1}, {"seed": 2}, {"seed": 1}])


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # config_flags' own loader
def test_override_flags_parse_back():
  overrides = {
    "learning_rate": 0.05,
    "optimizer.sgd.nesterov": False,
    "data.pp_train": "decode|flip_lr",
    "schedule.boundaries_epochs": (30, 60),
    "optimizer.weight_decay": 1e-05,
    "batch_size": 64,
  }
  arguments = sweep.override_flags(overrides)
  assert arguments == [
    "--config.learning_rate=0.05",
    "--config.optimizer.sgd.nesterov=False",
    "--config.data.pp_train=decode|flip_lr",
    "--config.schedule.boundaries_epochs=(30, 60)",
    "--config.optimizer.weight_decay=1e-05",
    "--config.batch_size=64",
  ]

  argv = ["prog", f"--config={REPO / 'configs' / 'default.py'}", *arguments]
  flag_values = flags.FlagValues()
  config_flag = config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
  flag_values(argv)
  expected = sweep.expand(load_config(), [overrides], "root", "flags")[0].config
  assert config_flag.value.to_dict() == expected.to_dict()


def test_run_name_collisions():
  assert sweep.run_name({"learning_rate": 0.1, "batch_size": 32}) == "learning_rate=0.1,batch_size=32"
  assert sweep.run_name({"optimizer.sgd.momentum": 0.9}) == "momentum=0.9"
  assert sweep.run_name({"data.pp_train": "decode|resize(8)"}) == "pp_train=decode_resize_8_"
  assert sweep.run_name({}) == "defaults"

  runs = sweep.zipped(sweep.axis("optimizer.name", ["adam", "sgd"]), sweep.axis("data.name", ["sgd", "adam"]))
  assert sweep.run_names(runs) == ["optimizer.name=adam,data.name=sgd", "optimizer.name=sgd,data.name=adam"]
  assert sweep.run_names([{"optimizer.name": "sgd"}, {"data.name": "sgd"}]) == ["optimizer.name=sgd", "data.name=sgd"]

  alike = sweep.run_names([{"data.pp_train": "a|b"}, {"data.pp_train": "a(b"}])
  assert alike[0] != alike[1] and all(name.startswith("pp_train=a_b-") for name in alike)

  long = [{"data.pp_train": "decode|" + "flip_lr|" * 20 + tail} for tail in ("a", "b")]
  names = sweep.run_names(long)
  assert names[0] != names[1] and all(len(name) == sweep.MAX_NAME_LENGTH for name in names)
  assert names == sweep.run_names(long)  # deterministic


def _fake_run(directory, summary, info=None, evaluation=None):
  """A finished run: its summary, sweep info and training's last evaluation, {"raw": (top-1, top-5, loss)}."""
  directory.mkdir(parents=True)
  (directory / "summary.json").write_text(json.dumps(summary))
  if evaluation:
    results.write(
      str(directory),
      results.Results(
        protocol="center",
        model="lenet5",
        step=summary["steps"],
        views=1,
        parameters={
          name: results.Statistics(*numbers, num_examples=10, per_class_accuracy=[])
          for name, numbers in evaluation.items()
        },
      ),
    )
  if info:
    (directory / "sweep.json").write_text(json.dumps(info))


def test_report_table(tmp_path):
  root = tmp_path / "sweeps" / "lr"
  _fake_run(
    root / "00_a",
    {"steps": 100, "wall_time_s": 12.6, "train_images_per_second": 1234.4},
    {"name": "learning_rate=0.05", "overrides": {"learning_rate": 0.05}, "sweep": "lr"},
    {"raw": (25.0, 10.0, 0.81234)},
  )
  _fake_run(
    root / "01_b",
    {"steps": 100},
    {"name": "pp_train=a_b", "overrides": {"data.pp_train": "a|b"}, "sweep": "lr"},
    {"raw": (20.0, 12.5, 0.7)},
  )
  (root / "01_b" / "checkpoints").mkdir()

  table = report.write_report([str(tmp_path / "sweeps"), str(root / "00_a")], str(tmp_path / "out" / "report.md"))
  assert (tmp_path / "out" / "report.md").read_text() == table + "\n"
  lines = table.splitlines()
  assert lines[0] == (
    "| run | learning_rate | data.pp_train | top-1 error % | top-5 error % | eval loss | steps "
    "| wall time s | images/s |"
  )
  assert lines[1] == "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  assert lines[2] == "| learning_rate=0.05 | 0.05 |  | 25.00 | 10.00 | 0.8123 | 100 | 13 | 1234 |"
  assert lines[3] == "| pp_train=a_b |  | a\\|b | 20.00 | 12.50 | 0.7000 | 100 | - | - |"
  assert len(lines) == 4  # the run found through both directories is listed once

  _fake_run(tmp_path / "plain", {"steps": 1})
  assert report.collect([str(tmp_path / "plain")])[0]["name"] == "plain"


def test_report_without_runs(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="no runs in .*empty: pass workdirs that hold a summary.json"):
    report.collect([str(tmp_path / "empty")])
  with pytest.raises(UserError, match="no runs in .*missing"):
    report.collect([str(tmp_path / "missing")])
