"""The measurements: maths on distributions and on what a model exposes (`encode(x) -> q(z|x)`,
`prior() -> p(z)`, `latents`, `decode`), never on the run that trains it.

- elbo.py: the per-point ELBO terms, one place for every model and prior;
- evaluation.py: the terms over a whole split under a fixed random stream, standard errors;
- surgery.py: the ELBO surgery against the exact aggregate posterior, TC, active units;
- likelihood.py: the importance-weighted log p(x), with the ELBO and posterior KL of its samples;
- diagnostics.py: all of it for one split of a trained model;
- inference_gaps.py: the amortization and approximation gaps, from q* fitted per point by
  per_point_lbfgs.py (one L-BFGS per point, batched);
- disentanglement.py: MIG, FactorVAE score and DCI against known factors;
- collapse.py: the posterior-collapse rule and its alarm.
"""
