"""Pieces of stable training: learning-rate schedule, weight averaging, time limits.

:func:`volseg.train` uses them together: AdamW with a linear warm-up and a cosine
decay of the learning rate (:func:`warmup_cosine`), gradient clipping, an exponential
moving average of the weights (:class:`WeightEMA`) that is validated and saved, and a
wall-time budget (:func:`parse_duration`) so that a job ends with its best checkpoint
before its SLURM time runs out. Each piece is small and tested on its own.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

import torch

__all__ = ["WeightEMA", "freeze_batchnorm", "parse_duration", "warmup_cosine"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd])")


def parse_duration(value: Any) -> float | None:
    """Seconds from ``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"``, ``"3600"`` or a number.

    Parameters
    ----------
    value : str, int, float or None
        A duration; a bare number counts seconds. None means no limit.

    Returns
    -------
    float or None
        Seconds (> 0), or None.

    Examples
    --------
    >>> parse_duration("2h"), parse_duration("90m"), parse_duration("1h30m"), parse_duration(45)
    (7200.0, 5400.0, 5400.0, 45.0)
    >>> parse_duration("two hours")
    Traceback (most recent call last):
    ...
    ValueError: max_time='two hours' is not a duration; write e.g. '2h', '90m', '1h30m' or seconds.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"max_time={value!r} is not a duration; give e.g. '2h' or seconds.")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(a + b for a, b in parts) != text:
                raise ValueError(
                    f"max_time={value!r} is not a duration; write e.g. '2h', '90m', '1h30m' "
                    "or seconds."
                ) from None
            seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"max_time={value!r} must be a positive duration, e.g. '2h'.")
    return seconds


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
