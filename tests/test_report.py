"""The paper-vs-run report from fake workdirs in the formats training and evaluation write: the table's numbers
under the paper's protocol, the fallback to training's center evaluation, ensembles, the charts, and the curves
read back from event files written by CLU's writer."""

import json

import pytest
from clu import metric_writers
from PIL import Image

from imagenet_train import report, results
from imagenet_train.errors import UserError

VGG_PAPER = {
  "reference": "Simonyan and Zisserman, ICLR 2015",
  "table": "Table 3, row D",
  "protocol": "10crop",
  "split": "val",
  "top1": 24.8,
  "top5": 7.5,
  "ensemble_models": 7,
  "ensemble_protocol": "dense",
  "ensemble_split": "test",
  "ensemble_top1": 23.7,
  "ensemble_top5": 6.8,
  "notes": "",
}
ALEX_PAPER = {
  "reference": "Krizhevsky et al., NIPS 2012",
  "table": "Table 2",
  "protocol": "10crop",
  "split": "test",
  "top1": 40.7,
  "top5": 18.2,
  "ensemble_models": 0,
  "ensemble_protocol": "",
  "ensemble_split": "",
  "ensemble_top1": None,
  "ensemble_top5": None,
  "notes": "one CNN",
}


def _write(path, content):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(content))


def _config(model, paper):
  return {
    "model": model,
    "paper": paper,
    "evaluation": {"protocol": "10crop", "resize": 256},
    "data": {"name": "imagenet2012", "eval_split": "validation"},
  }


def _stats(top1, top5, loss):
  return results.Statistics(top1_error=top1, top5_error=top5, log_loss=loss, num_examples=50_000, per_class_accuracy=[])


def _evaluation(workdir, protocol, step, parameters, model="vgg_d"):
  """An evaluation of `parameters` {name: (top-1, top-5, loss)} written as `evaluate` and training write it."""
  results.write(
    str(workdir),
    results.Results(
      protocol=protocol,
      model=model,
      step=step,
      views=10,
      parameters={name: _stats(*numbers) for name, numbers in parameters.items()},
    ),
  )


def _scalars(workdir, points):
  """`points` as training writes them: {step: {tag: value}} through CLU's default writer."""
  writer = metric_writers.create_default_writer(str(workdir), asynchronous=False)
  for step, scalars in points.items():
    writer.write_scalars(step, scalars)
  writer.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Four workdirs: vgg evaluated with its paper's 10crop (an older step too), alex with training's center
  evaluation only, old without config.json, and ens holding an ensemble of the two."""
  root = tmp_path_factory.mktemp("runs")
  vgg, alex = root / "vgg", root / "alex"
  _write(vgg / "config.json", _config("vgg_d", VGG_PAPER))
  _write(vgg / "summary.json", {"steps": 200, "wall_time_s": 3600.4, "train_images_per_second": 1000.2})
  _evaluation(vgg, "10crop", 100, {"raw": (30.0, 10.0, 1.5)})
  _evaluation(vgg, "10crop", 200, {"raw": (26.25, 8.0, 1.1), "ema": (25.5, 7.25, 1.05)})
  _evaluation(vgg, "center", 200, {"raw": (29.0, 9.0, 1.2), "ema": (29.5, 9.5, 1.25)})
  _write(alex / "config.json", _config("alexnet", ALEX_PAPER))
  _write(alex / "summary.json", {"steps": 50})
  _evaluation(alex, "center", 50, {"raw": (40.0, 20.0, 1.8)}, model="alexnet")
  _evaluation(root / "old", "center", 10, {"raw": (50.0, 30.0, 2.0)}, model="lenet5")
  results.write(
    str(root / "ens"),
    results.Results(
      protocol="ensemble",
      model="vgg_d+alexnet",
      step=None,
      views=0,
      parameters={"raw": _stats(22.0, 6.0, 0.9)},
      member_protocol="10crop",
      members=(
        results.Member(str(vgg), "vgg_d", 200, _stats(26.25, 8.0, 1.1)),
        results.Member(str(alex), "alexnet", 50, _stats(40.0, 20.0, 1.8)),
      ),
    ),
  )
  _scalars(
    vgg,
    {
      100: {"train/loss": 2.5, "train/learning_rate": 0.1},
      200: {"train/loss": 2.0, "eval/top1_error": 75.0, "eval_ema/top1_error": 50.0},
    },
  )
  _scalars(alex, {10: {"train/loss": 6.5}, 50: {"train/loss": 5.0, "eval/top1_error": 87.5}})
  return root


def _parse(markdown):
  """The table's rows as {header: cell}, and the lines after it."""
  lines = markdown.splitlines()
  end = lines.index("") if "" in lines else len(lines)
  header, *body = [line.strip("| ").split(" | ") for line in lines[:end] if not line.startswith("| --")]
  return [dict(zip(header, cells)) for cells in body], lines[end:]


def test_table_puts_runs_beside_their_papers(runs):
  rows, after = _parse(report.write_report([str(runs)]))
  assert list(rows[0]) == [
    "run",
    "model",
    "protocol",
    "paper top-1 %",
    "top-1 error %",
    "Δ top-1",
    "paper top-5 %",
    "top-5 error %",
    "Δ top-5",
    "eval loss",
    "steps",
    "wall time s",
    "images/s",
  ]
  table = [list(row.values()) for row in rows]
  assert table == [
    # only training's center evaluation: its figures, marked against the paper's 10crop on the test split
    [
      "alex",
      "alexnet",
      "center (paper: 10crop, test split)",
      "40.7",
      "40.00",
      "-0.70",
      "18.2",
      "20.00",
      "+1.80",
      "1.8000",
      "50",
      "-",
      "-",
    ],
    # the ensemble of two beside the paper's seven, evaluated with 10crop where the paper used dense
    [
      "ens (ensemble of 2; paper: 7)",
      "vgg_d+alexnet",
      "10crop (paper: dense, test split)",
      "23.7",
      "22.00",
      "-1.70",
      "6.8",
      "6.00",
      "-0.80",
      "0.9000",
      "-",
      "-",
      "-",
    ],
    ["old", "-", "-", "-", "50.00", "-", "-", "30.00", "-", "2.0000", "10", "-", "-"],  # no config.json
    # the latest 10crop evaluation, not the center one nor step 100
    ["vgg", "vgg_d", "10crop", "24.8", "26.25", "+1.45", "7.5", "8.00", "+0.50", "1.1000", "200", "3600", "1000"],
    ["vgg (ema)", "vgg_d", "10crop", "24.8", "25.50", "+0.70", "7.5", "7.25", "-0.25", "1.0500", "200", "3600", "1000"],
  ]
  assert after[-2:] == [
    "- alexnet: Krizhevsky et al., NIPS 2012, Table 2 (one CNN)",
    "- vgg_d+alexnet, vgg_d: Simonyan and Zisserman, ICLR 2015, Table 3, row D",
  ]


def test_center_fallback_uses_trainings_evaluation_with_its_averages(tmp_path):
  workdir = tmp_path / "resnet"
  _write(workdir / "config.json", _config("resnet50", {**ALEX_PAPER, "split": "val"}))
  _write(workdir / "summary.json", {"steps": 5})
  _evaluation(workdir, "center", 5, {"raw": (25.0, 12.5, 1.0), "polyak": (20.0, 10.0, 0.9)}, model="resnet50")
  rows, _ = _parse(report.write_report([str(workdir)]))
  columns = ("run", "protocol", "top-1 error %", "Δ top-1", "top-5 error %", "steps")
  assert [tuple(row[column] for column in columns) for row in rows] == [
    ("resnet", "center (paper: 10crop)", "25.00", "-15.70", "12.50", "5"),
    ("resnet (polyak)", "center (paper: 10crop)", "20.00", "-20.70", "10.00", "5"),
  ]


def test_read_curves_gives_back_the_written_points(runs, tmp_path):
  curves = report.read_curves(str(runs / "vgg"))
  assert curves["train/loss"] == ([100, 200], [2.5, 2.0])
  assert curves["eval/top1_error"] == ([200], [75.0])
  assert curves["train/learning_rate"][0] == [100] and curves["train/learning_rate"][1] == pytest.approx([0.1])

  # A resumed run writes a new event file that repeats the steps after its checkpoint: the later values count.
  metric_writers.create_default_writer(str(tmp_path), asynchronous=False).write_hparams({"batch_size": 8})
  _scalars(tmp_path, {1: {"train/loss": 4.0}, 2: {"train/loss": 3.0}, 3: {"train/loss": 2.0}})
  _scalars(tmp_path, {2: {"train/loss": 3.5}, 3: {"train/loss": 2.5}})
  assert report.read_curves(str(tmp_path)) == {"train/loss": ([1, 2, 3], [4.0, 3.5, 2.5])}  # no hparams
  assert report.read_curves(str(tmp_path / "missing")) == {}


def test_report_files(runs, tmp_path):
  out = tmp_path / "out"
  markdown = report.write_report([str(runs)], str(out))
  assert (out / "report.md").read_text() == markdown + "\n"
  for name in ("errors.png", "curves.png"):
    with Image.open(out / name) as image:
      assert image.format == "PNG" and image.width > 0 and image.height > 0
      image.verify()

  # Runs without paper numbers or event files: the table, but nothing to draw.
  _write(tmp_path / "bare" / "summary.json", {"steps": 3})
  assert report.write_report([str(tmp_path / "bare")], str(tmp_path / "bare_out")) == (
    "| run | steps |\n| --- | ---: |\n| bare | 3 |"
  )
  assert sorted(path.name for path in (tmp_path / "bare_out").iterdir()) == ["report.md"]


def test_bad_input(runs, tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="no runs in .*empty: pass workdirs that hold a summary.json"):
    report.write_report([str(tmp_path / "empty")])

  workdir = tmp_path / "broken"
  _write(workdir / "summary.json", {"steps": 5})
  (workdir / "eval_10crop_step_5.json").write_text('{"protocol": "10crop", "res')
  with pytest.raises(
    UserError,
    match=r"eval_10crop_step_5.json is not an evaluation result of this version "
    r"\(JSONDecodeError: .*\): delete it and run its evaluation again",
  ):
    report.write_report([str(workdir)])
  (workdir / "eval_10crop_step_5.json").unlink()
  (workdir / "config.json").write_text("{")
  with pytest.raises(UserError, match=r"broken/config.json is not valid JSON .*: delete it, or run its training again"):
    report.write_report([str(workdir)])
