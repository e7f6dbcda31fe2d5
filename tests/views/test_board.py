"""The TensorBoard layout a user meets: read back through TensorBoard's own readers, ordered as its
TIME SERIES dashboard orders tag groups."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import api_pb2, metrics, plugin_data_pb2

from vaebench.views.board import Board


def time_series_order(a: str, b: str) -> int:
    """TensorBoard 2.21's TIME SERIES comparison of tag names (`compareTagNames` in its webapp, read from
    the shipped webfiles.zip): character by character; a run of digits compares as a number; `/` and
    digits come before any other character; other characters by their code."""
    def breaks(c: str) -> bool:
        return c == "/" or c.isdigit()

    i = j = 0
    while True:
        if i == len(a):
            return 0 if j == len(b) else -1
        if j == len(b):
            return 1
        if a[i].isdigit() and b[j].isdigit():
            start_i, start_j = i, j
            while i < len(a) and a[i].isdigit():
                i += 1
            while j < len(b) and b[j].isdigit():
                j += 1
            if int(a[start_i:i]) != int(b[start_j:j]):
                return -1 if int(a[start_i:i]) < int(b[start_j:j]) else 1
            continue
        if breaks(a[i]) != breaks(b[j]):
            return -1 if breaks(a[i]) else 1
        if a[i] != b[j]:
            return -1 if a[i] < b[j] else 1
        i, j = i + 1, j + 1


def tag_groups(tags) -> list[str]:
    """The tag groups in the order TIME SERIES lists them; it opens the first two."""
    groups = []
    for tag in sorted(tags, key=functools.cmp_to_key(time_series_order)):
        if tag.split("/", 1)[0] not in groups:
            groups.append(tag.split("/", 1)[0])
    return groups


def test_the_comparison_is_tensorboards():
    assert sorted(["verdict", "visuals", "val", "train", "test", "disentanglement"],
                  key=functools.cmp_to_key(time_series_order)) == [
        "disentanglement", "test", "train", "val", "verdict", "visuals"]
    assert sorted(["a10", "a9", "a/b", "a_b"], key=functools.cmp_to_key(time_series_order)) == ["a/b", "a9", "a10", "a_b"]


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Path, Path]:
    """A run as vaebench writes it: curves, a histogram and pictures over two epochs, HParams, then the
    final evaluation's values and a `vaebench eval` of its best checkpoint."""
    run = tmp_path / "0" / "beta=4,prior=vamp"
    board = Board(run)
    board.hparams({"prior": "vamp", "K": "5", "beta": 4.0, "objective": "elbo", "epochs": "2"},
                  {"test/log_likelihood": "test log p(x)", "val/elbo": "val ELBO", "train/mutual_info": "train I(n;z)"})
    for step in (10, 20):
        board.scalars("train", {"elbo": -100.0 + step, "kl": 3.0, "kl_per_dim": torch.rand(4)}, step)
        board.scalars("val", {"elbo": -101.0 + step, "kl": 3.1}, step)
        board.image_grid("visuals/reconstructions", torch.rand(4, 1, 8, 8), step)
    board.single_values("final", {"test/log_likelihood": -80.5, "test/elbo": -82.0, "val/elbo": -81.0,
                                  "train/mutual_info": 2.5, "train/marginal_kl": 0.7}, 20)
    board.close()
    evaluation = Board(run)  # `vaebench eval`, later, in a process of its own
    evaluation.single_values("eval_best", {"val/log_likelihood": -79.9}, 20)
    evaluation.close()
    return tmp_path, run


def read(root: Path) -> EventMultiplexer:
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    return multiplexer


def test_time_series_opens_on_the_train_and_val_curves(logged):
    root, _ = logged
    (run,) = read(root).Runs().values()
    tags = [*run["scalars"], *run["histograms"], *run["images"]]
    assert tag_groups(tags) == ["train", "val", "verdict", "visuals"]


def test_values_measured_once_stay_in_the_run_that_drew_the_curves(logged):
    root, run_dir = logged
    runs = read(root).Runs()
    assert list(runs) == ["0/beta=4,prior=vamp"]  # one entry per run: no sub-run, so one colour
    assert not [p for p in run_dir.rglob("events.out.tfevents.*") if p.parent != run_dir]
    (run,) = runs.values()
    once = sorted(tag for tag in run["scalars"] if tag.startswith("verdict/"))
    assert once == ["verdict/eval_best/val/log_likelihood", "verdict/final/test/elbo",
                    "verdict/final/test/log_likelihood", "verdict/final/train/marginal_kl",
                    "verdict/final/train/mutual_info", "verdict/final/val/elbo"]
    # no curve group holds a tag measured once: every train/ and val/ card is a curve
    multiplexer = read(root)
    name = "0/beta=4,prior=vamp"
    for tag in run["scalars"]:
        points = multiplexer.Scalars(name, tag)
        if tag.startswith(("train/", "val/")):
            assert [p.step for p in points] == [10, 20], tag
        else:
            assert [p.step for p in points] == [20], tag  # at the run's last step
    assert multiplexer.Scalars(name, "verdict/final/val/elbo")[0].value == pytest.approx(-81.0)


def test_hparams_metrics_are_read_from_the_run_itself(logged):
    root, _ = logged
    multiplexer = read(root)
    name = "0/beta=4,prior=vamp"
    content = multiplexer.PluginRunToTagToContent("hparams")[name]["_hparams_/experiment"]
    infos = plugin_data_pb2.HParamsPluginData.FromString(content).experiment.metric_infos
    assert [(info.display_name, info.name.group, info.name.tag) for info in infos] == [
        ("test log p(x)", "", "verdict/final/test/log_likelihood"), ("val ELBO", "", "verdict/final/val/elbo"),
        ("train I(n;z)", "", "verdict/final/train/mutual_info")]
    for info in infos:  # where TensorBoard's HParams plugin looks for each metric's value
        run, tag = metrics.run_tag_from_session_and_metric(name, api_pb2.MetricName(group=info.name.group,
                                                                                     tag=info.name.tag))
        assert run == name and tag in multiplexer.Runs()[run]["scalars"]
    start = multiplexer.PluginRunToTagToContent("hparams")[name]["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["epochs"].string_value == "2" and hparams["beta"].number_value == 4.0
