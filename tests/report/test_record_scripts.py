"""The scripts that write the records (scripts/*_table.py) judge their differences with the report's
own test, and name the seeds they leave out."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

from vaebench.run.per_point import save_points

SCRIPTS = Path(__file__).resolve().parent.parent.parent / "scripts"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(beta: float, seed: int, factor_vae: float, **val) -> dict:
    terms = {"mig": 0.1, "factor_vae_score": factor_vae, "dci_disentanglement": 0.2, "dci_completeness": 0.3,
             "dci_informativeness": 0.4}
    return {"config": {"beta": beta, "seed": seed}, "disentanglement": terms,
            "val": {"kl": 20.0, "elbo": -100.0, "active_units": 8, **val}}


def test_disentanglement_table_tests_with_t_and_names_a_missing_seed():
    table = script("disentanglement_table")
    spread = 0.02 * 3 ** 0.5  # three seeds' differences of sd 0.0346: +0.080 ± 0.020, 4.0 SE
    groups = {("elbo", 1.0): [record(1.0, seed, 0.5) for seed in (0, 1, 2)],
              ("elbo", 4.0): [record(4.0, seed, 0.58 + shift) for seed, shift in zip((0, 1, 2, 3), (-spread, 0, spread, 0))]}
    text = table.paired_table(groups)
    row = next(line for line in text.splitlines() if line.startswith("| elbo | 4 − 1"))
    assert "| 3 | +0.000 ± 0.000 = | +0.080 ± 0.020 |" in row  # MIG identical: no test; FactorVAE 4.0 SE: not at 2 df
    assert "t with 2 df: 3 seeds" in text and "elbo β 4 − 1 FactorVAE 4" in text
    assert "Left out of the pairs: elbo β 4 − 1: seed 3 has no run at β 1." in text


def test_eb_spectrum_table_tests_with_t_and_names_a_missing_seed(tmp_path):
    table = script("eb_spectrum_table")
    rng = np.random.default_rng(0)
    places = {"standard": {}, "vamp": {}}
    for seed in (0, 1, 2):
        x = torch.as_tensor(rng.random((40, 3)))
        for name, shift in (("standard", 0.0), ("vamp", -3.0)):
            if name == "vamp" and seed == 2:
                continue
            folder = tmp_path / f"{name}{seed}"
            folder.mkdir()
            values = rng.normal(-100, 30, 40) if name == "standard" else places["standard"][seed][2] + shift * (1 + seed) / 1.5
            save_points(folder, x, {"log_likelihood": torch.as_tensor(values + rng.normal(0, 0.01, 40))})
            places[name][seed] = ({"eval.iw_samples": 5000}, folder, values)
    seeds = {name: {seed: (row, folder) for seed, (row, folder, _) in runs.items()} for name, runs in places.items()}
    text = table.paired(seeds["vamp"], seeds["standard"])
    # the seeds' differences -2 and -4: -3.00 ± 1.00, 3 SE, short of t = 12.7 at 1 df
    assert text.startswith("-3.00 ± 1.00, 2 seeds: p = 0.2") and "t with 1 df; seeds needed: 4;" in text
    assert text.endswith("; without seed 2: no run of this place")
