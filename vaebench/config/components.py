"""What each kind of component must provide, and how a run builds one from its config entry.

A config group entry (`conf/prior/vamp.yaml`, or a user's `my_conf/prior/laplace.yaml` found through
`--config-dir my_conf`) names the callable it builds, `_target_`, and that callable's arguments.
The run calls it with those arguments plus the things only the run knows, each handed in only when
the callable has an argument of that name:

| group     | the run hands in                                | the call returns                            |
|-----------|-------------------------------------------------|---------------------------------------------|
| dataset   | seed                                            | a `vaebench.datasets.Dataset`               |
| model     | data_shape                                      | a model (below), with `latent_dim`          |
| prior     | latent_dim, encode, data_shape, train_data      | an `nn.Module` whose call returns p(z)      |
| objective | beta, dataset_size, steps_per_epoch, latent_dim | a callable (`vaebench.objectives`)          |

A **prior** is an nn.Module (its parameters train with the model) whose call returns a
torch.distributions `Distribution` over R^latent_dim with `log_prob` (per point) and `sample`.
Beyond that, the diagnostics use what the distribution offers and leave out, with a note in the
run's log, what it does not:
- 1-D marginals, for `kl_per_dim`, `dimwise_kl` and the split of the marginal KL into TC +
  dimension-wise KL: a `torch.distributions.Independent` (its `base_dist.log_prob` gives them), or a
  `marginal_log_prob(z)` method returning shape (*batch, D);
- `sample`, for the prior-sample pictures;
- an analytic `kl_divergence(q, p)` registered with torch: without one the KL is Monte-Carlo.
A prior with a `pseudo_inputs` tensor (images) gets them drawn in TensorBoard and by `vaebench sample`,
on one grey scale: from its `low` to its `high` where it has them, else the data's range.

A **model** provides `encode(x) -> q(z|x)` (a `DiagonalNormal` over the top latent layer),
`latents`, `decode`, `decoder_output`, `sample_latents`, `likelihood` and `latent_dim`; it gets its
`prior` assigned after it is built (the VampPrior needs the model's encoder). See `vaebench.models`.

An **objective** is what a training step minimises: called as `objective(model, x, beta, step)`, it
returns the loss, the true per-point ELBO terms and its own named quantities (`vaebench.objectives`
says it in full). Its `prior_needs` ("marginals", "factorised") is checked against the built prior.

A **dataset** callable returns the three splits as tensors; `vaebench.datasets.from_arrays` splits and
binarises a pool of images as the shipped datasets do.

Each argument's allowed values are declared once, in the callable's signature (`vaebench.config.checks`),
and checked before any work starts.
"""

from __future__ import annotations

import inspect
import logging

import torch
from hydra.utils import get_object, instantiate
from torch.distributions import Distribution

from vaebench.config.checks import check_arguments
from vaebench.config.groups import RUN_TIME_ARGUMENTS
from vaebench.config.moved import current_target, moved_module_hint
from vaebench.errors import UserError
from vaebench.metrics.elbo import has_marginals, is_factorised



def target_of(node, where: str, entry: str):
    """The callable a config entry names, or a one-paragraph error that names the entry."""
    path = node.get("_target_") if hasattr(node, "get") else None
    if not path:
        raise UserError(f"{entry} has no _target_: a {where} config entry names the class or function it builds "
                        f"(e.g. _target_: vaebench.priors.VampPrior) and its arguments.")
    hydra_log = logging.getLogger("hydra.utils")  # it logs its own error block before raising: ours says it
    level = hydra_log.level
    hydra_log.setLevel(logging.CRITICAL)
    try:
        return get_object(current_target(str(path)))
    except Exception as err:
        cause = err.__cause__ or err
        hint = moved_module_hint(getattr(cause, "name", None)) if isinstance(cause, ModuleNotFoundError) else ""
        raise UserError(
            f"{entry}: {where}._target_={path} cannot be imported ({type(cause).__name__}: {cause}). Check the "
            "dotted path, and that its module lies in the folder you run vaebench from or in an installed package."
            + hint
        ) from None
    finally:
        hydra_log.setLevel(level)


def check_component(node, where: str, entry: str) -> None:
    check_arguments(node, where, target_of(node, where, entry), RUN_TIME_ARGUMENTS[where], entry)


def build(node, where: str, entry: str = "", **run_time):
    """Call the entry's `_target_` with its arguments and those of `run_time` that it names."""
    target = target_of(node, where, entry or where)
    params = inspect.signature(target).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    handed = {name: value for name, value in run_time.items() if takes_any or name in params}
    return instantiate(node, _partial_=True, _convert_="all")(**handed)


def build_dataset(node, seed: int, entry: str = "dataset"):
    return build(node, "dataset", entry, seed=seed)


def build_model(cfg, data_shape: tuple[int, ...], train_data: torch.Tensor, choices: dict | None = None):
    """The model `cfg.model` names, with the prior `cfg.prior` names on its top latent layer."""
    choices = choices or {}
    model = build(cfg.model, "model", entry_of("model", choices), data_shape=tuple(data_shape))
    model.prior = build(cfg.prior, "prior", entry_of("prior", choices), latent_dim=model.latent_dim,
                        encode=model.encode, data_shape=tuple(data_shape), train_data=train_data)
    return model


def build_objective(node, model, dataset_size: int, steps_per_epoch: int, beta: float, choices: dict | None = None):
    """The objective `node` names, refused in one paragraph when the model's prior lacks what it needs."""
    choices = choices or {}
    entry = entry_of("objective", choices)
    objective = build(node, "objective", entry, beta=float(beta), dataset_size=int(dataset_size),
                      steps_per_epoch=int(steps_per_epoch), latent_dim=int(model.latent_dim))
    needs = getattr(objective, "prior_needs", None)
    if needs:
        with torch.no_grad():
            p_z = model.prior()
        prior = f"{entry_of('prior', choices)} gives a {type(p_z).__name__}"
        if needs == "factorised" and not is_factorised(p_z):
            raise UserError(
                f"{entry} needs a factorised prior, p(z) = prod_j p(z_j): it weighs the prior's 1-D marginals "
                f"(the dimension-wise KL), and its parts add up to the KL only when the prior factorises; {prior}, "
                "which does not. Use prior=standard (or your own torch.distributions Independent prior), or an "
                "objective that takes any prior (objective=elbo, free_bits, capacity, iwae).")
        if needs == "marginals" and not has_marginals(p_z):
            raise UserError(
                f"{entry} needs the KL of each latent dimension, KL(q(z_j|x) || p(z_j)), so a prior with 1-D "
                f"marginals (a torch.distributions Independent, or a marginal_log_prob(z) method); {prior}, which "
                "has neither. Use prior=standard, mog or vamp, or give your prior a marginal_log_prob method.")
    return objective


def entry_of(group: str, choices: dict, fallback: str = "") -> str:
    """How the user chose a component, e.g. `prior=vamp` (`prior=<fallback>` without a recorded
    choice; the bare group name without either)."""
    chosen = choices.get(group) or fallback
    return f"{group}={chosen}" if chosen else group


def prior_notes(p_z: Distribution, entry: str = "prior") -> list[str]:
    """What the diagnostics leave out for this prior distribution, one sentence each."""
    notes = []
    if not has_marginals(p_z):
        notes.append(f"{entry}: its p(z) ({type(p_z).__name__}) offers no 1-D marginals (an Independent "
                     "distribution, or a marginal_log_prob method), so kl_per_dim and dimwise_kl are left out.")
    if type(p_z).sample is Distribution.sample and type(p_z).rsample is Distribution.rsample:
        notes.append(f"{entry}: its p(z) ({type(p_z).__name__}) has no sampler, so no prior samples are drawn.")
    return notes

