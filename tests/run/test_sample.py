"""`vaebench sample RUN`: every picture as a PNG of the size its options ask for and an .npz of its arrays,
for every model and prior and for a run saved by an earlier vaebench; the pseudo-inputs on one grey scale
(in TensorBoard too); bad input refused in a paragraph."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.config.test_components import old_layout
from tests.conftest import TINY, run_cli, run_dirs
from vaebench.priors import VampPrior
from vaebench.run import checkpoint
from vaebench.run.sample import KINDS
from vaebench.run.saved_run import checked_device, read_checkpoint, rebuild
from vaebench.views.pictures import log_pictures

ONE_EPOCH = [*TINY, "trainer.epochs=1", "eval.iw_samples=2", "eval.surgery_samples=2", "eval.gap_points=0"]
SMALL_SPRITES = ["dataset=sprites", "dataset.size=32", "dataset.scales=2", "dataset.orientations=3",
                 "dataset.positions=6", "model.channels=4"]  # 648 images of 32x32
BEFORE_THE_MOVE = Path(__file__).parents[1] / "config" / "data" / "run_before_the_move"


@pytest.fixture(scope="module")
def vamp_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vamp")
    run_cli(["train", *ONE_EPOCH, "prior=vamp", "prior.K=5"], cwd=root)
    (run_dir,) = run_dirs(root)
    return run_dir


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A one-epoch VampPrior run of an earlier vaebench (latent_dim=2, K=3), saved in the `name:` era."""
    run_dir = tmp_path / "old"
    shutil.copytree(BEFORE_THE_MOVE, run_dir)
    path = run_dir / "checkpoints" / "best.pt"
    state = checkpoint.load(path)
    state["config"] = old_layout(state["config"])
    torch.save(state, path)
    return run_dir


def grid_size(columns: int, rows: int, side: int, scale: int) -> tuple[int, int]:
    """(width, height) of a grid of side x side images, each pixel scale x scale, `scale` pixels apart."""
    cell = side * scale + scale
    return columns * cell + scale, rows * cell + scale


def png(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
    return image


def test_every_picture_is_a_png_of_its_size_and_an_npz_of_its_arrays(vamp_run):
    proc = run_cli(["sample", str(vamp_run), "checkpoint=last", "points=3,17,42,7", "n=6", "--scale", "2"], cwd=vamp_run)
    folder = vamp_run / "samples"
    expected = {"samples": grid_size(6, 1, 28, 2), "reconstructions": grid_size(4, 2, 28, 2),
                "interpolations": grid_size(12, 2, 28, 2), "pseudo_inputs": grid_size(5, 1, 28, 2)}  # K=5 < n
    for what, size in expected.items():
        image = png(folder / f"{what}_last_epoch1.png")
        assert (image.size, image.mode) == (size, "L"), what
        assert image.info["Title"].startswith(f"{what}: ") and "checkpoint last (epoch 1" in image.info["Title"]
        assert image.info["Description"] in proc.stdout
    assert png(folder / "traversals_last_epoch1.png").size[0] >= 10 * 28 * 2  # ten images a row, each 56 px or more

    arrays = {what: np.load(folder / f"{what}_last_epoch1.npz") for what in KINDS}
    assert arrays["samples"]["images"].shape == (6, 1, 28, 28) and arrays["samples"]["z"].shape == (6, 4)
    reconstructions = arrays["reconstructions"]
    assert reconstructions["points"].tolist() == [3, 17, 42, 7]
    assert reconstructions["inputs"].shape == reconstructions["reconstructions"].shape == (4, 1, 28, 28)
    interpolations = arrays["interpolations"]
    assert interpolations["pairs"].tolist() == [[3, 17], [42, 7]]
    assert interpolations["images"].shape == (2, 10, 1, 28, 28) and interpolations["z"].shape == (2, 10, 4)
    assert np.array_equal(interpolations["a"], reconstructions["inputs"][[0, 2]])
    traversals = arrays["traversals"]
    assert traversals["images"].shape == (4, 10, 1, 28, 28) and sorted(traversals["dims"].tolist()) == [0, 1, 2, 3]
    assert arrays["pseudo_inputs"]["pseudo_inputs"].shape == (5, 1, 28, 28) and arrays["pseudo_inputs"]["weights"].shape == (5,)
    assert all(str(a["caption"]) and "checkpoint last" in str(a["title"]) for a in arrays.values())

    # The grid's first image is test point 3 as the model saw it, each pixel a 2 x 2 block.
    grid = np.asarray(png(folder / "reconstructions_last_epoch1.png"))
    assert np.array_equal(grid[2:58:2, 2:58:2], (reconstructions["inputs"][0, 0] * 255).astype(np.uint8))
    assert np.array_equal(grid[2:58:2, 2:58:2], grid[3:58:2, 3:58:2])


def test_by_default_a_digit_is_three_times_its_size_and_the_best_checkpoint_drawn(vamp_run):
    run_cli(["sample", str(vamp_run), "what=samples", "n=2"], cwd=vamp_run)
    assert png(vamp_run / "samples" / "samples_best_epoch1.png").size == grid_size(2, 1, 28, 3)  # 84 px each


def test_pseudo_inputs_share_one_grey_scale_here_and_in_tensorboard(vamp_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(vamp_run, run_dir)
    chosen = torch.rand(5, 1, 28, 28)
    chosen[0] = 0.5  # mid-grey
    chosen[1] = torch.linspace(0.45, 0.55, 28 * 28).view(1, 28, 28)  # nearly flat: stretched, black to white
    monkeypatch.setattr(VampPrior, "pseudo_inputs", property(lambda prior: chosen))

    run_cli(["sample", str(run_dir), "what=pseudo_inputs", "scale=1"], cwd=run_dir)
    grid = np.asarray(png(run_dir / "samples" / "pseudo_inputs_best_epoch1.png")).astype(int)
    first, second = grid[1:29, 1:29], grid[1:29, 30:58]
    assert np.all(np.abs(first - 127.5) <= 1)
    assert 0.45 * 255 - 1 <= second.min() and second.max() <= 0.55 * 255 + 1

    class Board:  # what log_pictures hands TensorBoard
        def __init__(self):
            self.images = {}

        def image_grid(self, tag, images, step, nrow=10):
            self.images[tag] = images

        def figure(self, *args):
            pass

    _, state, cfg = read_checkpoint(run_dir, "best")
    data, model = rebuild(cfg, state, checked_device(cfg))
    board = Board()
    log_pictures(board, model, data.val, step=0)
    shown = board.images["visuals/pseudo_inputs"]
    assert torch.allclose(shown[0], torch.full_like(shown[0], 0.5), atol=1e-5)
    assert shown[1].min() >= 0.45 - 1e-4 and shown[1].max() <= 0.55 + 1e-4


@pytest.mark.parametrize("model,prior,extra", [("hvae", "aggregate", []), ("conv", "mog", ["model.channels=4", "prior.K=3"]),
                                               ("conv64", "standard", SMALL_SPRITES)])
def test_every_model_and_prior_draws_what_it_has(tmp_path, model, prior, extra):
    run_cli(["train", *ONE_EPOCH, f"model={model}", f"prior={prior}", *extra,
             *([f"dataset.root={tmp_path / 'cache'}"] if extra == SMALL_SPRITES else [])], cwd=tmp_path)
    (run_dir,) = run_dirs(tmp_path)
    proc = run_cli(["sample", str(run_dir), "n=4"], cwd=tmp_path)
    side = 32 if model == "conv64" else 28
    scale = math.ceil(84 / side)
    assert png(run_dir / "samples" / "samples_best_epoch1.png").size == grid_size(4, 1, side, scale)
    assert png(run_dir / "samples" / "reconstructions_best_epoch1.png").size == grid_size(4, 2, side, scale)
    assert png(run_dir / "samples" / "interpolations_best_epoch1.png").size == grid_size(12, 2, side, scale)
    assert png(run_dir / "samples" / "traversals_best_epoch1.png").size[0] > 10 * side * scale
    assert f"pseudo_inputs left out: prior={prior} has no pseudo-inputs (the VampPrior, prior=vamp, has them)." in proc.stdout
    assert not list((run_dir / "samples").glob("pseudo_inputs*"))


def test_a_run_saved_by_an_earlier_vaebench_draws_everything(old_run):
    proc = run_cli(["sample", str(old_run), "points=5"], cwd=old_run)
    for what in ("samples", "reconstructions", "traversals", "pseudo_inputs"):
        assert png(old_run / "samples" / f"{what}_best_epoch1.png").size[0] > 84
    assert np.load(old_run / "samples" / "pseudo_inputs_best_epoch1.npz")["pseudo_inputs"].shape == (3, 1, 28, 28)
    assert np.load(old_run / "samples" / "traversals_best_epoch1.npz")["images"].shape == (2, 10, 1, 28, 28)
    assert "interpolations left out: they need two test points or more (points=5 has one)." in proc.stdout


@pytest.mark.parametrize("args,words", [
    (["nowhere"], ["nowhere is not a folder", "outputs/DATE/TIME"]),
    (["{run}", "what=samples,faces"], ["'faces' is not a picture", ", ".join(KINDS)]),
    (["{run}", "colour=red"], ["'colour=red' is not a sample option", "checkpoint, what, n, points, scale"]),
    (["{run}", "points=1,100000"], ["points=1,100000", "the test split has 500 points, 0 to 499"]),
    (["{run}", "points=1,x"], ["points=1,x is not valid", "points=3,17,42"]),
    (["{run}", "n=0"], ["n=0 is not valid", "1 or more"]),
    (["{run}", "checkpoint=middle"], ["checkpoint='middle' is not valid", "best or last"]),
    (["{empty}"], ["has no checkpoints/best.pt", "run folder"]),
])
def test_bad_input_is_refused_in_a_paragraph(old_run, tmp_path, args, words):
    (tmp_path / "empty").mkdir()
    args = [arg.format(run=old_run, empty=tmp_path / "empty") for arg in args]
    proc = run_cli(["sample", *args], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert all(word in proc.stderr for word in words), proc.stderr
    assert not (old_run / "samples").exists()
