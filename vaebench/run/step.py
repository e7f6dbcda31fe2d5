"""The training step on one screen: the objective's loss on a batch (under the precision's autocast),
its gradient, one Adam update, and the batch's sums of everything logged."""

from __future__ import annotations

import contextlib
import time

import torch

from vaebench.run.compiled import CompilePlan, CompiledOrEager


# AdamNormGrad's guard against a zero gradient (utils/optimizer.py of the VampPrior code).
NORMGRAD_EPS = 1e-7


class TrainingStep:
    def __init__(self, model, objective, lr: float, device: torch.device, compile: bool | str = False,
                 remaining_steps=None, on_compile=None, optimizer: str = "adam"):
        """`compile`: True, False or "auto" (`run.compiled.CompilePlan`, which asks `remaining_steps()`);
        `on_compile()`: called as the step becomes compiled (the run's threads stop following the load);
        `optimizer`: "adam", or "adamnormgrad" (the VampPrior code's: Adam on each parameter tensor's
        gradient divided by its 2-norm + 1e-7)."""
        self.model, self.objective = model, objective
        self.normalise_gradients = optimizer == "adamnormgrad"
        # Fused Adam: the same update as the default, in one kernel per step instead of several per tensor.
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=device.type in ("cpu", "cuda") or None)
        self.learned = [p for p in model.parameters() if p.requires_grad]
        # Steps taken, on the device for an objective with a schedule (capacity); the default step skips it.
        self.objective_step = torch.zeros((), device=device) if getattr(objective, "uses_step", False) else None
        self.setting, self.remaining_steps, self.device = compile, remaining_steps, device
        self.loss_fn, self.plan, self.on_compile = self._loss, None, on_compile
        self.compiled: bool | None = False  # None while `auto` times its first steps
        self.keep_decision(None)

    def keep_decision(self, saved: dict | None) -> None:
        """Compiled or eager as `saved` (`compile_record()` of the run this step continues) decided, so
        that a resumed run takes the path it was on; timing on where it had not decided yet."""
        decided = (saved or {}).get("compiled")
        if self.setting is True or (self.setting == "auto" and decided is True):
            if self.compiled is not True:
                self._compile()
        elif self.setting == "auto" and decided is None and self.remaining_steps:
            self.loss_fn, self.compiled = self._loss, None
            self.plan = CompilePlan(self.remaining_steps, self.device, (saved or {}).get("timed_s", ()))
        else:
            self.loss_fn, self.compiled, self.plan = self._loss, False, None

    def _compile(self) -> None:
        self.compiled = True
        if self.on_compile is not None:
            self.on_compile()
        self.loss_fn = CompiledOrEager(self._loss)

    def compile_record(self) -> dict:
        """What a checkpoint keeps of the compile decision: a resumed run takes the same path."""
        return {"compiled": self.compiled, "timed_s": list(self.plan.seconds) if self.plan is not None else []}

    def numbers(self, x: torch.Tensor, beta: torch.Tensor) -> list[torch.Tensor]:
        """The eager step's loss, logged sums and gradients on `x`, with no update: what
        `threads.numbers_depend_on_threads` compares (the caller puts the random streams back)."""
        loss, _, sums = self._loss(x, beta)
        gradients = torch.autograd.grad(loss, self.learned, allow_unused=True)
        return [loss.detach(), sums, *(g for g in gradients if g is not None)]

    def _loss(self, x: torch.Tensor, beta: torch.Tensor):
        """The mean loss to differentiate, the names of what is logged, and [loss, *ELBO terms, *the
        objective's quantities, beta] summed over the batch's points (a batch-level value and beta count
        once per point), so that the epoch's sums divided by its points are per-point means."""
        loss, terms, quantities = self.objective(self.model, x, beta, self.objective_step)
        with torch.no_grad():  # the logged sums need no graph
            rows = [(v if v.dim() else v.expand(len(x))).float() for v in (loss, *terms.values(), *quantities.values())]
            sums = torch.stack([*rows, beta.float().expand(len(x))]).sum(dim=1)
        return loss.mean(), [*terms, *(f"objective/{name}" for name in quantities)], sums

    def __call__(self, x: torch.Tensor, beta: torch.Tensor, autocast=contextlib.nullcontext(), measure_grad_norm: bool = False):
        """One optimiser step: the batch's sums (`_loss`), the names of what they sum, and the gradients'
        2-norm when asked (else None): 13 norm kernels, so the loop asks once per log interval."""
        if self.plan is not None:
            return self._timed(x, beta, autocast, measure_grad_norm)
        with autocast:
            loss, names, sums = self.loss_fn(x, beta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.learned if p.grad is not None]
        grad_norm = _total_norm(grads) if measure_grad_norm else None  # the objective's own gradient, as logged
        if self.normalise_gradients:
            torch._foreach_div_(grads, torch._foreach_add(torch._foreach_norm(grads), NORMGRAD_EPS))
        self.optimizer.step()
        return sums, names, grad_norm

    def _timed(self, x, beta, autocast, measure_grad_norm):
        """A step of `trainer.compile=auto`'s first ones: timed (the device's queue included) for its plan."""
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        started = time.perf_counter()
        plan, self.plan = self.plan, None
        out = self(x, beta, autocast, measure_grad_norm)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        decided = plan.observe(time.perf_counter() - started)
        if decided is None:
            self.plan = plan
        elif decided:
            self._compile()
        else:
            self.compiled = False
        return out


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients together, as clip_grad_norm_ computes it, without rescaling them."""
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
