"""Dynamic binarisation: each pixel is 1 with probability its grey level, independently of its neighbours."""

import torch

from vaebench.datasets.arrays import bernoulli_image


def test_each_pixel_is_one_with_probability_its_grey_level():
    torch.manual_seed(0)
    levels = torch.arange(256.0) / 255  # every grey level of an 8-bit image, 0 and 1 included
    x = levels.repeat(4, 1)             # 1024 pixels
    draws = torch.stack([bernoulli_image(x) for _ in range(2000)])
    assert draws.shape == (2000, *x.shape) and draws.dtype == x.dtype
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    frequency = draws.mean(dim=0)
    # 5 binomial standard errors, plus the 2^-16 rounding of the probability.
    tolerance = 5 * (x * (1 - x) / len(draws)).sqrt() + 2.0**-16
    assert ((frequency - x).abs() <= tolerance).all()
    assert (frequency[x == 0] == 0).all() and (frequency[x == 1] == 1).all()


def test_pixels_that_share_a_random_word_are_independent():
    torch.manual_seed(1)
    draws = torch.stack([bernoulli_image(torch.full((4, 8), 0.5)) for _ in range(20000)]).flatten(1)
    # Neighbouring pixels take their 16 bits from the same 64-bit draw; their correlation must vanish.
    centred = draws - draws.mean(dim=0)
    correlation = (centred[:, :-1] * centred[:, 1:]).mean(dim=0) / 0.25
    assert correlation.abs().max() < 5 / len(draws) ** 0.5


def test_any_shape_and_the_same_seed_give_the_same_image():
    x = torch.rand(3, 1, 5, 7)  # 105 pixels: not a multiple of the four a random word makes
    torch.manual_seed(2)
    first = bernoulli_image(x)
    torch.manual_seed(2)
    assert first.shape == x.shape and torch.equal(first, bernoulli_image(x))
