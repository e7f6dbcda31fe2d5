"""Disentanglement metrics of a representation against known generative factors.

Each metric takes `codes` (N, D), a representation of N points (vaebench hands in the posterior
means E[z|x]), and `factors` (N, K), each point's class of each factor, and is a pure function of
them and a seed:

- MIG, the mutual information gap (Chen et al. 2018): each code dimension is discretised into
  `bins` = 20 equal-width bins over its range; I(z_j; v_k) is the plug-in mutual information of the
  joint histogram; per factor, the gap between the two dimensions that know most about it, divided
  by the factor's entropy H(v_k); averaged over factors. 1: each factor fully in one dimension only.
- The FactorVAE score (Kim & Mnih 2018): each dimension is divided by its standard deviation over all
  N points; dimensions whose standard deviation is below `min_std` (0.05, as in the common reference
  implementation: a collapsed dimension of a unit-Gaussian prior) are left out. A vote fixes one factor (chosen uniformly) at the value of a
  random point, draws `batch` = 100 points sharing that value (with replacement), and names the
  dimension of least variance; the majority-vote classifier maps each dimension to the factor it
  most often votes for (800 training votes); the score is its accuracy on 800 other votes. 1: fixing
  each factor stills a dimension of its own. Chance, for a useless representation, is about 1/K.
- DCI (Eastwood & Williams 2018): per factor, a random forest classifier (scikit-learn, 30 trees,
  all features tried at every split, fixed seed) predicts the factor's class from the codes, fitted
  on 75% of the points; its impurity-based feature importances are column k of the importance
  matrix R (D x K). Disentanglement: 1 - entropy (base K) of each dimension's row of R, normalised,
  averaged with weights proportional to the row's total importance. Completeness: 1 - entropy (base
  D) of each factor's column, averaged over factors. Informativeness: the classifiers' accuracy on
  the held-out 25%, averaged over factors (higher is better, as in Locatello et al. 2019, rather
  than the paper's error).

`metrics` runs all three on at most `max_points` = 10,000 points (a random subset chosen by the
seed) and gives the FactorVAE score a binomial standard error over its evaluation votes (the
votes' noise only). MIG and DCI have no standard error here.
"""

from __future__ import annotations

import math

import numpy as np

MIG_BINS = 20
FACTOR_VAE_BATCH = 100
FACTOR_VAE_VOTES = 800        # training votes; as many again for the evaluation
FACTOR_VAE_MIN_STD = 0.05
DCI_TREES = 30
DCI_TRAIN_FRACTION = 0.75
MAX_POINTS = 10_000
SEED = 0
METRIC_NAMES = ("mig", "factor_vae_score", "dci_disentanglement", "dci_completeness", "dci_informativeness")


def _arrays(codes, factors) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes (N, D) and factors (N, K) expected; got {codes.shape} and {factors.shape}")
    return codes, _as_classes(factors)


def _as_classes(factors: np.ndarray) -> np.ndarray:
    """Each factor's values as classes 0 .. n-1 (in order of value)."""
    return np.stack([np.unique(column, return_inverse=True)[1].reshape(-1) for column in factors.T], axis=1)


def discretise(codes: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """Each column of `codes` as bin indices 0 .. bins-1 of `bins` equal-width bins over its range."""
    low, high = codes.min(0), codes.max(0)
    width = np.where(high > low, (high - low) / bins, 1.0)
    return np.clip(((codes - low) / width).astype(np.int64), 0, bins - 1)


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in I(a; b) in nats of two integer arrays, from their joint histogram."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])))


def entropy(a: np.ndarray) -> float:
    p = np.bincount(a) / len(a)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def mutual_information_matrix(codes, factors, bins: int = MIG_BINS) -> np.ndarray:
    """I(z_j; v_k) / H(v_k), (D, K): the share of each factor's entropy each dimension holds."""
    codes, factors = _arrays(codes, factors)
    binned = discretise(codes, bins)
    mi = np.array([[mutual_information(binned[:, j], factors[:, k]) for k in range(factors.shape[1])]
                   for j in range(codes.shape[1])])
    h = np.array([entropy(factors[:, k]) for k in range(factors.shape[1])])
    return mi / np.where(h > 0, h, 1.0)


def mig(codes, factors, bins: int = MIG_BINS) -> dict:
    """{"mig": mean over factors, "per_factor": the gap of each factor, "mi": I(z_j; v_k) / H(v_k)}."""
    normalised = mutual_information_matrix(codes, factors, bins)
    ordered = np.sort(normalised, axis=0)[::-1]
    gaps = ordered[0] - (ordered[1] if len(ordered) > 1 else 0.0)
    return {"mig": float(gaps.mean()), "per_factor": gaps, "mi": normalised}


def factor_vae_score(codes, factors, seed: int = SEED, votes: int = FACTOR_VAE_VOTES, batch: int = FACTOR_VAE_BATCH,
                     min_std: float = FACTOR_VAE_MIN_STD) -> dict:
    """{"score": held-out accuracy of the majority-vote classifier, "se": its binomial SE,
    "active_dims": how many dimensions took part}."""
    codes, factors = _arrays(codes, factors)
    std = codes.std(0)
    active = np.flatnonzero(std >= min_std)
    if not len(active):  # every dimension collapsed: no dimension can vote
        return {"score": 0.0, "se": 0.0, "active_dims": 0}
    scaled = codes[:, active] / std[active]
    rng = np.random.default_rng(seed)
    n_factors = factors.shape[1]
    members = [[np.flatnonzero(factors[:, k] == value) for value in range(factors[:, k].max() + 1)]
               for k in range(n_factors)]

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        chosen_factor = rng.integers(n_factors, size=n)
        dims = np.empty(n, dtype=np.int64)
        for i, k in enumerate(chosen_factor):
            pool = members[k][factors[rng.integers(len(factors)), k]]
            dims[i] = np.argmin(scaled[rng.choice(pool, batch)].var(0))
        return dims, chosen_factor

    train_dims, train_factors = draw(votes)
    counts = np.zeros((len(active), n_factors))
    np.add.at(counts, (train_dims, train_factors), 1)
    vote_of_dim = counts.argmax(1)
    eval_dims, eval_factors = draw(votes)
    score = float(np.mean(vote_of_dim[eval_dims] == eval_factors))
    return {"score": score, "se": math.sqrt(score * (1 - score) / votes), "active_dims": int(len(active))}


def dci(codes, factors, seed: int = SEED, trees: int = DCI_TREES, train_fraction: float = DCI_TRAIN_FRACTION) -> dict:
    """{"disentanglement", "completeness", "informativeness", "importance": R (D, K)}."""
    from sklearn.ensemble import RandomForestClassifier

    codes, factors = _arrays(codes, factors)
    n, n_dims = codes.shape
    n_factors = factors.shape[1]
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(train_fraction * n))
    fit, held_out = order[:cut], order[cut:]
    importance = np.zeros((n_dims, n_factors))
    accuracy = np.zeros(n_factors)
    for k in range(n_factors):
        forest = RandomForestClassifier(n_estimators=trees, max_features=None, random_state=seed, n_jobs=1)
        forest.fit(codes[fit], factors[fit, k])
        importance[:, k] = forest.feature_importances_
        accuracy[k] = forest.score(codes[held_out], factors[held_out, k]) if len(held_out) else np.nan
    return {"disentanglement": _disentanglement(importance), "completeness": _completeness(importance),
            "informativeness": float(np.nanmean(accuracy)), "importance": importance}


def _normalised_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each row of p (rows sum to 1) in base `base`; 0 where base is 1."""
    if base <= 1:
        return np.zeros(len(p))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(1) / math.log(base)


def _disentanglement(importance: np.ndarray) -> float:
    totals = importance.sum(1)
    if totals.sum() <= 0:
        return 0.0
    used = totals > 0
    rows = importance[used] / totals[used, None]
    weights = totals[used] / totals.sum()
    return float(np.sum(weights * (1 - _normalised_entropy(rows, importance.shape[1]))))


def _completeness(importance: np.ndarray) -> float:
    totals = importance.sum(0)
    used = totals > 0
    if not used.any():
        return 0.0
    columns = (importance[:, used] / totals[used]).T
    return float(np.mean(1 - _normalised_entropy(columns, importance.shape[0])))


def metrics(codes, factors, names: tuple[str, ...], seed: int = SEED, max_points: int = MAX_POINTS) -> tuple[dict, dict]:
    """All three metrics on at most `max_points` points: (the scalars, as metrics.json's
    `disentanglement` block, and the details: which factor each dimension captures)."""
    codes, factors = _arrays(codes, factors)
    if len(codes) > max_points:
        chosen = np.sort(np.random.default_rng(seed).choice(len(codes), max_points, replace=False))
        codes, factors = codes[chosen], factors[chosen]
    gap = mig(codes, factors)
    votes = factor_vae_score(codes, factors, seed)
    forest = dci(codes, factors, seed)
    scalars = {"mig": gap["mig"], "factor_vae_score": votes["score"], "factor_vae_score_se": votes["se"],
               "dci_disentanglement": forest["disentanglement"], "dci_completeness": forest["completeness"],
               "dci_informativeness": forest["informativeness"], "points": int(len(codes)),
               "factor_vae_active_dims": votes["active_dims"]}
    mi = gap["mi"]
    std = codes.std(0)
    details = {
        "factors": list(names),
        "mig_per_factor": {name: float(g) for name, g in zip(names, gap["per_factor"])},
        # per latent dimension: the factor it holds most of (by I(z_j; v_k) / H(v_k)) and that share
        "factor_of_dim": [names[int(np.argmax(row))] for row in mi],
        "factor_share_of_dim": [float(row.max()) for row in mi],
        # the dimensions the FactorVAE score uses: the standard deviation of their means is at least min_std
        "active_dims": [int(j) for j in np.flatnonzero(std >= FACTOR_VAE_MIN_STD)],
        "mi_normalised": mi.round(4).tolist(),
        "dci_importance": forest["importance"].round(4).tolist(),
    }
    return scalars, details


def of_model(model, data, batch_size: int = 1000, seed: int = SEED) -> tuple[dict, dict] | None:
    """The metrics of a trained model's posterior means E[z|x] (the top latent layer) on the points
    of every split of `data`; None when the data have no known factors."""
    import torch

    if getattr(data, "factors", None) is None:
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    codes = []
    with torch.no_grad():
        for split in ("train", "val", "test"):
            x = data.split(split)
            codes += [model.encode(x[i:i + batch_size].to(device)).mean.float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    factors = torch.cat([data.factors.split(s).cpu() for s in ("train", "val", "test")])
    return metrics(torch.cat(codes).numpy(), factors.numpy(), data.factors.names, seed)
