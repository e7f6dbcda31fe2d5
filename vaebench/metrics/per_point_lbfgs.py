"""Many small independent minimisations at once: one L-BFGS per point, in one batched call of the
objective per trial step, each point with its own memory, line search and stopping rule.

One L-BFGS on the sum of the points' objectives would tie them together: one step length for all
(the worst-conditioned point's), one curvature model mixing all, and every point kept until the slowest
is done. Here a point's step, curvature pairs and stop are its own; a point that has stopped leaves the
batch, so later calls evaluate only the points still moving.
"""

from __future__ import annotations

import torch

MEMORY = 10              # curvature pairs kept per point
ARMIJO = 1e-4            # sufficient decrease: f(x + t d) <= f(x) + ARMIJO t g.d
MAX_BACKTRACKS = 30      # halvings (at least) of a step before the point counts as stalled
FIRST_STEP = 1.0         # the largest change of any coordinate at a point's first step, in its own units


def minimise_each(loss, start: torch.Tensor, tolerance: float, max_iterations: int, on_done=None):
    """Minimise `loss(params, index) -> (n,)`, a smooth deterministic function of each row of `params`
    (n, P) for the points `index` (n,), each row on its own. A point stops when its last step lowered
    its loss by less than `tolerance` and the quasi-Newton model predicts less than `tolerance` from a
    full next step; when its line search finds no decrease (the loss is flat to float precision); or
    after `max_iterations` steps. `on_done(index, params)` hears of the points as they stop.
    Returns the final rows (N, P) and the steps each point took (N,)."""
    points = len(start)
    params = start.detach().clone()
    everyone = torch.arange(points, device=start.device)
    value, gradient = _value_and_gradient(loss, params, everyone)
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, 1 / s.y), oldest first
    last_gain = torch.full((points,), float("inf"), device=start.device, dtype=value.dtype)
    steps = torch.zeros(points, dtype=torch.long, device=start.device)
    active = everyone
    while len(active):
        direction = _direction(gradient[active], [(s[active], y[active], rho[active]) for s, y, rho in history])
        uphill = ~((gradient[active] * direction).sum(1) < 0)  # a model spoilt by a non-convex stretch
        direction[uphill] = -gradient[active][uphill]  # a gradient step instead
        slope = (gradient[active].to(value.dtype) * direction.to(value.dtype)).sum(1)
        predicted_gain = -0.5 * slope
        finished = ((last_gain[active] < tolerance) & (predicted_gain < tolerance)) | (steps[active] >= max_iterations)
        if finished.any():
            _finish(on_done, active[finished], params)
            keep = ~finished
            active, direction, slope = active[keep], direction[keep], slope[keep]
            if not len(active):
                break
        step = torch.ones_like(slope)
        if not history:
            step = torch.clamp(FIRST_STEP / direction.abs().amax(1).clamp_min(1e-30), max=1.0).to(slope.dtype)
        accepted = _line_search(loss, params, value, active, direction, slope, step)
        stalled = active[~accepted.ok]
        if len(stalled):
            _finish(on_done, stalled, params)
        moved = active[accepted.ok]
        s = (accepted.step[accepted.ok].unsqueeze(1) * direction[accepted.ok]).to(params.dtype)
        y = accepted.gradient[accepted.ok] - gradient[moved]
        _remember(history, moved, s, y, points)
        last_gain[moved] = value[moved] - accepted.value[accepted.ok]
        params[moved] += s
        value[moved], gradient[moved] = accepted.value[accepted.ok], accepted.gradient[accepted.ok]
        steps[moved] += 1
        active = moved
    return params, steps


def _value_and_gradient(loss, params: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = params.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = loss(rows, index)
        (gradient,) = torch.autograd.grad(value.sum(), rows)
    return value.detach(), gradient


def _direction(gradient: torch.Tensor, history: list) -> torch.Tensor:
    """-H g by the two-loop recursion, H the inverse-Hessian model of each point's pairs; a pair whose
    1 / s.y is 0 (it was skipped) changes nothing."""
    q = gradient.clone()
    alphas = []
    for s, y, rho in reversed(history):
        alpha = rho * (s * q).sum(1)
        q -= alpha.unsqueeze(1) * y
        alphas.append(alpha)
    scale = torch.ones_like(gradient[:, 0])
    unset = torch.ones_like(scale, dtype=torch.bool)
    for s, y, rho in reversed(history):  # the newest kept pair sets each point's initial scale s.y / y.y
        found = (rho > 0) & unset
        scale = torch.where(found, (s * y).sum(1) / y.pow(2).sum(1).clamp_min(1e-30), scale)
        unset &= ~found
    r = scale.unsqueeze(1) * q
    for (s, y, rho), alpha in zip(history, reversed(alphas)):
        beta = rho * (y * r).sum(1)
        r += (alpha - beta).unsqueeze(1) * s
    return -r


class _Trial:
    def __init__(self, n: int, like: torch.Tensor, values_like: torch.Tensor):
        self.ok = torch.zeros(n, dtype=torch.bool, device=like.device)
        self.step = torch.zeros(n, dtype=values_like.dtype, device=like.device)
        self.value = torch.zeros(n, dtype=values_like.dtype, device=like.device)
        self.gradient = torch.zeros(n, like.shape[1], dtype=like.dtype, device=like.device)


def _line_search(loss, params, value, active, direction, slope, step) -> _Trial:
    """Backtracking to sufficient decrease, each point on its own: a call evaluates only the points not
    yet satisfied; a failed step shrinks to the minimum of the quadratic through f(0), f'(0) and f(t),
    kept within [t/10, t/2]."""
    result = _Trial(len(active), params, value)
    pending = torch.arange(len(active), device=params.device)
    for _ in range(MAX_BACKTRACKS):
        index = active[pending]
        t = step[pending]
        trial = params[index] + (t.unsqueeze(1) * direction[pending]).to(params.dtype)
        trial_value, trial_gradient = _value_and_gradient(loss, trial, index)
        decrease = trial_value - value[index]
        ok = torch.isfinite(trial_value) & torch.isfinite(trial_gradient).all(1) & (decrease <= ARMIJO * t * slope[pending])
        done = pending[ok]
        result.ok[done], result.step[done] = True, t[ok]
        result.value[done], result.gradient[done] = trial_value[ok], trial_gradient[ok]
        curvature = (decrease - slope[pending] * t) / t.pow(2)
        shrunk = torch.where(torch.isfinite(curvature) & (curvature > 0), -slope[pending] / (2 * curvature), 0.1 * t)
        step[pending] = torch.minimum(torch.maximum(shrunk, 0.1 * t), 0.5 * t)
        pending = pending[~ok]
        if not len(pending):
            break
    return result


def _remember(history: list, moved: torch.Tensor, s: torch.Tensor, y: torch.Tensor, points: int) -> None:
    """Keep the step's pair where it says the loss curves upward (s.y > 0: the model stays positive
    definite); elsewhere a zero pair, which the recursion skips."""
    curvature = (s * y).sum(1)
    keep = curvature > 1e-10 * s.norm(dim=1) * y.norm(dim=1)
    full_s = s.new_zeros(points, s.shape[1])
    full_y = torch.zeros_like(full_s)
    rho = s.new_zeros(points)
    full_s[moved[keep]], full_y[moved[keep]] = s[keep], y[keep]
    rho[moved[keep]] = 1 / curvature[keep]
    history.append((full_s, full_y, rho))
    if len(history) > MEMORY:
        history.pop(0)


def _finish(on_done, index: torch.Tensor, params: torch.Tensor) -> None:
    if on_done is not None:
        on_done(index, params[index])
