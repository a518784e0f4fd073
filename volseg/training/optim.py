"""Pieces of stable training: optimiser, learning-rate schedule, weight averaging, freezing.

:func:`volseg.train` uses them together: AdamW (:func:`adamw`) with a linear warm-up
and a cosine decay of the learning rate (:func:`warmup_cosine`), gradient clipping
(:func:`clip_gradients`), an exponential moving average of the weights
(:class:`WeightEMA`) that is validated and saved, BatchNorm statistics frozen for
small batches (:func:`freeze_batchnorm`) and a frozen encoder
(:func:`freeze_encoder_parameters`).
The wall-time budget is :func:`volseg.training.settings.parse_duration`. Each piece
is small and tested on its own.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

__all__ = [
    "WeightEMA",
    "adamw",
    "clip_gradients",
    "freeze_batchnorm",
    "freeze_encoder_parameters",
    "warmup_cosine",
]


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.01):
    """Learning-rate factor at ``step``: linear warm-up, then a cosine decay to ``min_factor``.

    Parameters
    ----------
    step : int
        Optimiser steps taken so far (0 for the first step).
    total_steps : int
        Steps of the whole schedule.
    warmup_steps : int
        Steps of the linear warm-up from ``1 / warmup_steps`` to 1.
    min_factor : float
        The factor at the end of the schedule (and after it).

    Returns
    -------
    float

    Examples
    --------
    >>> [round(warmup_cosine(s, 10, 2), 3) for s in (0, 1, 2, 6, 10, 20)]
    [0.5, 1.0, 1.0, 0.505, 0.01, 0.01]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WeightEMA:
    """Exponential moving average of a network's weights and BatchNorm statistics.

    After every optimiser step, ``update(network)`` moves each floating-point
    parameter and buffer (BatchNorm running means and variances included) of the
    average towards the network's: ``avg = d * avg + (1 - d) * current``. The decay
    starts low and grows with the number of updates ``n`` as ``min(decay, (1 + n) /
    (10 + n))``, so the average follows the fast early changes and smooths the late
    ones. Integer buffers (BatchNorm's batch counters) are copied.

    Parameters
    ----------
    network : torch.nn.Module
        The network being trained; the average starts as a copy of it.
    decay : float
        The decay after many updates, in [0, 1).

    Examples
    --------
    >>> net = torch.nn.Linear(1, 1, bias=False)
    >>> _ = torch.nn.init.zeros_(net.weight)
    >>> ema = WeightEMA(net, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = net.weight.fill_(1.0)
    >>> ema.update(net)  # first update: decay min(0.5, 1/10) = 0.1
    >>> round(float(ema.module.weight), 3), ema.updates
    (0.9, 1)
    """

    def __init__(self, network: torch.nn.Module, decay: float = 0.999):
        if not 0 <= decay < 1:
            raise ValueError(f"ema_decay={decay!r} must be in [0, 1), e.g. 0.999.")
        self.module = copy.deepcopy(network).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    @torch.no_grad()
    def update(self, network: torch.nn.Module) -> None:
        """Move the average one step towards ``network``."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        current = network.state_dict()
        for name, value in self.module.state_dict().items():
            source = current[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(source, alpha=1.0 - decay)
            else:
                value.copy_(source)

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count (for resuming)."""
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])


def freeze_batchnorm(network: torch.nn.Module) -> int:
    """Put every BatchNorm layer in eval mode: running statistics fixed, affine weights trained.

    Used for small batches: batch statistics of a few crops are noisy, so after the
    warm-up the layers normalise with the running statistics gathered so far.
    Call it after ``network.train()`` (which switches them back).

    Parameters
    ----------
    network : torch.nn.Module

    Returns
    -------
    int
        How many layers were frozen.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).train()
    >>> freeze_batchnorm(net), net[1].training, net[0].training
    (1, False, True)
    """
    count = 0
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
            count += 1
    return count


def freeze_encoder_parameters(network: torch.nn.Module, frozen: bool) -> None:
    """Train the encoder's parameters (``frozen=False``) or keep them as loaded.

    Examples
    --------
    >>> net = torch.nn.Module()
    >>> net.encoder = torch.nn.Linear(2, 2)
    >>> freeze_encoder_parameters(net, True)
    >>> [p.requires_grad for p in net.encoder.parameters()]
    [False, False]
    """
    for parameter in network.encoder.parameters():
        parameter.requires_grad = not frozen


def adamw(
    network: torch.nn.Module, lr: float, weight_decay: float
) -> tuple[torch.optim.AdamW, list[torch.nn.Parameter]]:
    """AdamW over the trainable parameters of ``network``, and those parameters.

    Examples
    --------
    >>> optimiser, trainable = adamw(torch.nn.Linear(2, 1), lr=1e-3, weight_decay=1e-4)
    >>> len(trainable), optimiser.param_groups[0]["weight_decay"]
    (2, 0.0001)
    """
    trainable = [p for p in network.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay), trainable


def clip_gradients(
    scaler: torch.amp.GradScaler,
    optimiser: torch.optim.Optimizer,
    parameters: list[torch.nn.Parameter],
    grad_clip: float | None,
) -> None:
    """Scale the gradients of a step down to a norm of ``grad_clip`` (None: leave them).

    With loss scaling (``scaler``), the gradients are unscaled first.

    Examples
    --------
    >>> net = torch.nn.Linear(2, 1)
    >>> optimiser, trainable = adamw(net, 1e-3, 0.0)
    >>> (net(torch.ones(1, 2)) * 100).sum().backward()
    >>> clip_gradients(torch.amp.GradScaler(enabled=False), optimiser, trainable, 1.0)
    >>> round(float(torch.nn.utils.get_total_norm([p.grad for p in trainable])), 4)
    1.0
    """
    if grad_clip is not None:
        scaler.unscale_(optimiser)
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
