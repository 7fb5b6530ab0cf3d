"""Schedule-free sign descent, the optimizer SAEs train with by default.

Steepest descent in the L∞ norm (sign-SGD, Bernstein et al. 2018) made
schedule-free (Defazio et al. 2024, "The Road Less Scheduled"): the step is taken
at z, the parameters the model sees during training are y = β·x + (1 − β)·z, and
x, a running average of the z iterates weighted by lr², is what is evaluated and
saved. EleutherAI's sparsify trains with the same combination
(`ScheduleFreeWrapper(SignSGD)`), which reaches a much lower FVU than Adam at small
token budgets; this is a single-tensor implementation with a linear warmup,
whose state (x, z, the weight sum) round-trips through `state_dict` bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch.optim import Optimizer

Constraint = Callable[[torch.Tensor], None]


class SignScheduleFree(Optimizer):
    """Schedule-free sign-SGD; evaluate and save the average `state[p]["x"]`.

    `constraints` maps a parameter to an in-place projection `fn(tensor)`, applied
    to its iterate z after each step (see `step`).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        momentum: float = 0.95,
        warmup_steps: int = 0,
        weight_lr_power: float = 2.0,
        constraints: Mapping[torch.Tensor, Constraint] | None = None,
    ) -> None:
        if lr <= 0 or not 0.0 <= momentum < 1.0:
            raise ValueError(f"need lr > 0 and 0 <= momentum < 1: {lr=}, {momentum=}")
        self.constraints = dict(constraints or {})
        defaults = dict(
            lr=lr,
            momentum=momentum,
            warmup_steps=warmup_steps,
            weight_lr_power=weight_lr_power,
            k=0,
            weight_sum=0.0,
            lr_max=0.0,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        """One step at z, the average x, then y = lerp(x, z, 1 − β) into the
        parameter.

        A constrained parameter's z is projected after x has taken it in, so x
        averages the unprojected iterates. Only z is projected: the average of
        projected z's stays inside the constraint set's hull (for unit decoder
        rows: norms below 1). Projecting z alone gave 5–8 % lower held-out FVU
        than also projecting x, and than projecting y as sparsify does
        (docs/performance.md); the trainer restores unit rows at the end.

        Leaves sign(grad) in each `p.grad` (the trainer drops grads next).
        """
        assert closure is None, "closure is not supported"
        for group in self.param_groups:
            k = group["k"]
            lr = group["lr"] * min(1.0, (k + 1) / max(1, group["warmup_steps"]))
            group["lr_max"] = lr_max = max(lr, group["lr_max"])
            weight = lr_max ** group["weight_lr_power"]
            group["weight_sum"] += weight
            c = weight / group["weight_sum"]
            beta = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["z"] = p.detach().clone()
                    state["x"] = p.detach().clone()
                z, x = state["z"], state["x"]
                # In place: a new [M, D] sign tensor per step would be mapped
                # and faulted in afresh (75 MB at the seeds' shape).
                z.add_(p.grad.sign_(), alpha=-lr)
                x.lerp_(z, c)
                if (project := self.constraints.get(p)) is not None:
                    project(z)
                # One pass over x and z (copy_ then lerp_ took two over p).
                torch.lerp(x, z, 1.0 - beta, out=p)
            group["k"] = k + 1

    def current_lr(self) -> float:
        """The first group's learning rate at the next step (after warmup)."""
        g = self.param_groups[0]
        return g["lr"] * min(1.0, (g["k"] + 1) / max(1, g["warmup_steps"]))
