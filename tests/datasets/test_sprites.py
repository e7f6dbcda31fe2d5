"""The sprites generator, the sprites and dSprites datasets, and the 64x64 convolutional model."""

import numpy as np
import pytest
import torch

from vaebench.datasets import with_factors as sprites
from vaebench.errors import UserError
from vaebench.models import BurgessVAE

SMALL = dict(size=32, scales=3, orientations=4, positions=5)
VALUES = sprites.factor_values(scales=6, orientations=10, positions=10)
BASE = np.array([2, 3, 4, 5, 5])  # a heart, middle scale, orientation and position


def picture(classes) -> np.ndarray:
    return sprites.render_classes(np.asarray(classes)[None], VALUES, size=64)[0].astype(np.float64)


def area_and_centre(image: np.ndarray) -> tuple[float, float, float]:
    rows, columns = np.nonzero(image)
    return float(len(rows)), float(columns.mean()), float(rows.mean())


@pytest.mark.parametrize("factor", range(5))
def test_changing_one_factor_changes_the_image_and_only_what_that_factor_means(factor):
    base = picture(BASE)
    area, cx, cy = area_and_centre(base)
    for value in range(len(VALUES[sprites.FACTOR_NAMES[factor]])):
        classes = BASE.copy()
        classes[factor] = value
        image = picture(classes)
        if value == BASE[factor]:
            assert np.array_equal(image, base)  # the same factors: the same image
            continue
        assert not np.array_equal(image, base)
        a, x, y = area_and_centre(image)
        step = VALUES[sprites.FACTOR_NAMES[factor]][value] - VALUES[sprites.FACTOR_NAMES[factor]][BASE[factor]]
        if factor == 3:    # x: the sprite moves sideways, as far as x says, and nothing else
            assert x - cx == pytest.approx(step * 64, abs=0.6) and y == pytest.approx(cy, abs=0.3)
            assert a == pytest.approx(area, rel=0.03)
        elif factor == 4:  # y: the sprite moves down or up
            assert y - cy == pytest.approx(step * 64, abs=0.6) and x == pytest.approx(cx, abs=0.3)
            assert a == pytest.approx(area, rel=0.03)
        elif factor == 1:  # scale: the area grows with the square of the scale
            ratio = (VALUES["scale"][value] / VALUES["scale"][BASE[1]]) ** 2
            assert a / area == pytest.approx(ratio, rel=0.08)
        elif factor == 2:  # orientation: the same area, turned about its centre
            assert a == pytest.approx(area, rel=0.04)
            assert np.hypot(x - cx, y - cy) < 0.6
        else:              # shape: another shape in the same place
            assert np.hypot(x - cx, y - cy) < 0.6


def test_no_two_factor_combinations_give_the_same_image():
    classes = sprites.factor_grid((3, 3, 4, 5, 5))
    images = sprites.render_classes(classes, sprites.factor_values(3, 4, 5), size=32)
    assert len({image.tobytes() for image in images}) == len(classes)
    assert images.any(axis=(1, 2)).all() and not images[:, 0, :].any()  # every sprite visible, inside the frame


def test_the_datasets_labels_are_the_factors_of_its_images(tmp_path):
    data = sprites.sprites(seed=3, root=str(tmp_path), **SMALL)
    sizes = (3, 3, 4, 5, 5)
    assert data.factors.names == sprites.FACTOR_NAMES and data.factors.sizes == sizes
    values = sprites.factor_values(3, 4, 5)
    seen = []
    for split in ("train", "val", "test"):
        x, classes = data.split(split), data.factors.split(split).numpy()
        assert x.shape[1:] == (1, 32, 32) and set(x.unique().tolist()) <= {0.0, 1.0}
        assert np.array_equal(x[:, 0].numpy(), sprites.render_classes(classes, values, 32))
        assert torch.equal(data.labels(split), data.factors.split(split)[:, 0])  # the shape colours the scatter
        seen.append(classes)
    seen = np.concatenate(seen)
    assert len(seen) == np.prod(sizes) and len({tuple(c) for c in seen}) == len(seen)  # every combination once


def test_sprites_are_rendered_once_and_cached_under_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = sprites.sprites(seed=0, **SMALL)
    (cached,) = (tmp_path / "vaebench" / "sprites").glob("*.npz")
    stamp = cached.stat().st_mtime_ns
    monkeypatch.setattr(sprites, "render_classes", lambda *a, **k: pytest.fail("rendered again"))
    again = sprites.sprites(seed=0, **SMALL)
    assert torch.equal(first.train, again.train) and cached.stat().st_mtime_ns == stamp
    other_split = sprites.sprites(seed=1, **SMALL)  # the seed splits the same cached images differently
    assert not torch.equal(first.train, other_split.train)


def fake_dsprites(path, n=60, with_classes=True):
    rng = np.random.default_rng(0)
    classes = np.stack([np.zeros(n, int), rng.integers(3, size=n), rng.integers(6, size=n), rng.integers(40, size=n),
                        rng.integers(32, size=n), rng.integers(32, size=n)], axis=1)
    classes[:6, 1:] = [[2, 5, 39, 31, 31]] * 6  # every factor reaches its last class
    arrays = {"imgs": rng.integers(2, size=(n, 64, 64), dtype=np.uint8)}
    if with_classes:
        arrays["latents_classes"] = classes
    np.savez(path, **arrays)
    return arrays


def test_dsprites_reads_the_original_files_arrays_and_drops_the_constant_colour(tmp_path):
    arrays = fake_dsprites(tmp_path / "d.npz")
    data = sprites.dsprites(seed=0, path=str(tmp_path / "d.npz"), max_points=50)
    assert data.factors.names == ("shape", "scale", "orientation", "x", "y") and data.factors.sizes == (3, 6, 40, 32, 32)
    assert len(data.train) + len(data.val) + len(data.test) == 50
    images = {image.tobytes(): tuple(c) for image, c in zip(arrays["imgs"].astype(np.float32), arrays["latents_classes"][:, 1:])}
    for split in ("train", "val", "test"):
        for image, classes in zip(data.split(split)[:, 0].numpy(), data.factors.split(split).numpy()):
            assert images[image.tobytes()] == tuple(classes)


def test_dsprites_without_its_file_or_arrays_says_what_it_needs(tmp_path):
    with pytest.raises(UserError, match=r"dataset.path='nowhere.npz' is not a file.*latents_classes.*dataset=sprites"):
        sprites.dsprites(seed=0, path="nowhere.npz")
    fake_dsprites(tmp_path / "d.npz", with_classes=False)
    with pytest.raises(UserError, match=r"has no array latents_classes \(it has: imgs\)"):
        sprites.dsprites(seed=0, path=str(tmp_path / "d.npz"))


@pytest.mark.parametrize("side", [32, 64])
def test_the_burgess_model_fits_64_and_32_pixel_images(side):
    model = BurgessVAE((1, side, side), latent_dim=3, hidden_dim=16, channels=4)
    x = torch.rand(2, 1, side, side).round()
    assert model.encode(x).mean.shape == (2, 3)
    assert model.decoder_output(torch.zeros(2, 3)).shape == (2, 1, side, side)


def test_the_burgess_model_refuses_other_image_sizes():
    with pytest.raises(UserError, match=r"model=conv64 needs square images of 64x64 or 32x32.*\(1, 28, 28\)"):
        BurgessVAE((1, 28, 28))
