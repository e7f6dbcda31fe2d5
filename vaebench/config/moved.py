"""Where vaebench's own names went when the package took the shape of its config tree (one folder per
config group): a run saved before names its components by their old homes, and resumes, evaluates
and reports as before; a component of one's own that imports an old module hears where its names are."""

from __future__ import annotations

# A saved config's `_target_` -> the component's home now. Names not listed kept their home.
MOVED_TARGETS = {
    "vaebench.data.mnist5k": "vaebench.datasets.mnist5k",
    "vaebench.data.mnist": "vaebench.datasets.mnist",
    "vaebench.data.fashion_mnist": "vaebench.datasets.fashion_mnist",
    "vaebench.data.static_mnist": "vaebench.datasets.static_mnist",
    "vaebench.data.npz": "vaebench.datasets.npz",
    "vaebench.sprites.sprites": "vaebench.datasets.sprites",
    "vaebench.sprites.dsprites": "vaebench.datasets.dsprites",
    "vaebench.objectives.elbo.ELBO": "vaebench.objectives.ELBO",
    "vaebench.objectives.capacity.Capacity": "vaebench.objectives.Capacity",
    "vaebench.objectives.free_bits.FreeBits": "vaebench.objectives.FreeBits",
    "vaebench.objectives.beta_tc.BetaTC": "vaebench.objectives.BetaTC",
    "vaebench.objectives.iwae.IWAE": "vaebench.objectives.IWAE",
}

# An old module -> where the names a component of one's own imported from it are now.
MOVED_MODULES = {
    "vaebench.checks": "vaebench.config (Count, Positive, NonNegative, NonNegativeInt, Unused)",
    "vaebench.data": "vaebench.datasets (from_arrays, Dataset)",
    "vaebench.sprites": "vaebench.datasets",
    "vaebench.nets": "vaebench.models (MLPEncoder, MLPDecoder, Likelihood, ...)",
    "vaebench.distributions": "vaebench.distributions (now a package: DiagonalNormal, ...)",
    "vaebench.elbo": "vaebench.metrics.elbo",
    "vaebench.components": "vaebench.config.components",
}


def current_target(path: str) -> str:
    """The `_target_` as this vaebench names it."""
    return MOVED_TARGETS.get(path, path)


def moved_module_hint(missing: str | None) -> str:
    """A sentence for an import that failed on a module vaebench used to have; empty otherwise."""
    if not missing or missing not in MOVED_MODULES:
        return ""
    return f" vaebench's {missing} has moved: import from {MOVED_MODULES[missing]}."
