"""MIG, the FactorVAE score and DCI on synthetic representations whose answer is known: the factors
themselves (perfect), a random rotation of them (entangled), and noise (nothing)."""

import numpy as np
import pytest

from vaebench.metrics import disentanglement as dis
from vaebench.datasets.with_factors import factor_grid

NAMES = ("shape", "scale", "orientation", "x", "y")
FACTORS = factor_grid((3, 4, 5, 6, 6))  # 2,160 points, every combination once: the factors are independent


def standardised(factors: np.ndarray) -> np.ndarray:
    return (factors - factors.mean(0)) / factors.std(0)


@pytest.fixture(scope="module")
def scores() -> dict[str, dict]:
    rng = np.random.default_rng(0)
    perfect = standardised(FACTORS)
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    representations = {
        "perfect": perfect,
        "rotated": perfect @ rotation,
        "noise": rng.normal(size=(len(FACTORS), 5)),
        # five dimensions that are the factors, five that are noise: a VAE's unused dimensions
        "perfect_and_noise": np.concatenate([perfect, 0.5 * rng.normal(size=(len(FACTORS), 5))], axis=1),
    }
    return {name: dis.metrics(codes, FACTORS, NAMES)[0] for name, codes in representations.items()}


def test_the_factors_themselves_score_perfectly(scores):
    perfect = scores["perfect"]
    assert perfect["mig"] > 0.95
    assert perfect["factor_vae_score"] == 1.0
    assert perfect["dci_disentanglement"] > 0.95
    assert perfect["dci_completeness"] > 0.95
    assert perfect["dci_informativeness"] > 0.95


def test_a_rotation_of_the_factors_scores_lower_but_stays_informative(scores):
    perfect, rotated = scores["perfect"], scores["rotated"]
    assert rotated["mig"] < perfect["mig"] - 0.3
    assert rotated["factor_vae_score"] < perfect["factor_vae_score"] - 0.1
    assert rotated["dci_disentanglement"] < perfect["dci_disentanglement"] - 0.3
    assert rotated["dci_completeness"] < perfect["dci_completeness"] - 0.3
    # the rotation loses no information: the classifiers still predict every factor
    assert rotated["dci_informativeness"] > 0.9


def test_noise_scores_near_zero_and_the_factor_vae_score_near_chance(scores):
    noise = scores["noise"]
    assert noise["mig"] < 0.05
    assert noise["dci_disentanglement"] < 0.1 and noise["dci_completeness"] < 0.1
    # a majority vote over dimensions that know nothing is right about once in K (5 factors)
    chance = 1 / len(NAMES)
    assert abs(noise["factor_vae_score"] - chance) < 0.1
    # each factor predicted about as well as guessing its most common class
    assert noise["dci_informativeness"] < 0.4


def test_unused_noise_dimensions_do_not_spoil_a_perfect_representation(scores):
    both = scores["perfect_and_noise"]
    assert both["mig"] > 0.9 and both["factor_vae_score"] == 1.0 and both["dci_disentanglement"] > 0.9


def test_mig_ignores_the_scale_and_order_of_dimensions():
    rng = np.random.default_rng(1)
    codes = standardised(FACTORS) @ np.linalg.qr(rng.normal(size=(5, 5)))[0]
    moved = codes[:, ::-1] * np.array([3.0, 0.1, 7.0, 1.0, 0.5]) + 4.0
    assert dis.mig(moved, FACTORS)["mig"] == pytest.approx(dis.mig(codes, FACTORS)["mig"], abs=1e-9)


def test_mutual_information_is_the_entropy_for_a_copy_and_zero_for_independent_arrays():
    a = FACTORS[:, 4]
    assert dis.mutual_information(a, a) == pytest.approx(dis.entropy(a)) == pytest.approx(np.log(6))
    assert dis.mutual_information(FACTORS[:, 3], FACTORS[:, 4]) == pytest.approx(0.0, abs=1e-12)


def test_collapsed_dimensions_cast_no_votes():
    codes = np.random.default_rng(2).normal(scale=0.01, size=(len(FACTORS), 4))  # standard deviation 0.01 < 0.05
    result = dis.factor_vae_score(codes, FACTORS)
    assert result["active_dims"] == 0 and result["score"] == 0.0


def test_the_factor_vae_score_prunes_on_standard_deviation_so_scaled_identity_codes_still_score_one():
    """Codes that are the factors themselves, scaled by 0.2 (standard deviation 0.2 or more, variance
    0.04 or more): every dimension votes and the score is 1. A rule on variance < 0.05 dropped some."""
    codes = 0.2 * (FACTORS - FACTORS.mean(0)) / FACTORS.std(0)
    result = dis.factor_vae_score(codes, FACTORS)
    assert result["active_dims"] == FACTORS.shape[1] and result["score"] == 1.0
    assert dis.factor_vae_score(0.04 * codes, FACTORS)["active_dims"] == 0  # standard deviation 0.008


def test_each_dimension_is_named_by_the_factor_it_holds():
    permuted = standardised(FACTORS)[:, [3, 0, 4, 1, 2]]  # z0 = x, z1 = shape, ...
    _, details = dis.metrics(permuted, FACTORS, NAMES)
    assert details["factor_of_dim"] == ["x", "shape", "y", "scale", "orientation"]
    assert details["active_dims"] == [0, 1, 2, 3, 4]


def test_the_sample_is_capped_and_fixed_by_the_seed():
    codes = standardised(FACTORS) + np.random.default_rng(3).normal(scale=0.3, size=(len(FACTORS), 5))
    first, _ = dis.metrics(codes, FACTORS, NAMES, max_points=1000)
    again, _ = dis.metrics(codes, FACTORS, NAMES, max_points=1000)
    assert first["points"] == 1000 and first == again
