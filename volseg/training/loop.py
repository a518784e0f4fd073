"""The training loop: optimiser steps of an epoch, validation, early stopping.

:class:`TrainingRun` holds what the steps touch (network, optimiser, moving
average, loss, crops, schedule position); :meth:`TrainingRun.train_epoch` takes the
steps of one epoch, :func:`evaluate` scores the validation tiles and :func:`fit`
runs the epochs: after each it validates, keeps the best checkpoint, writes the
resumable state and stops early (``patience``) or at ``max_time``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import metrics
from .. import model as vmodel
from .crops import Crops
from .losses import Loss, loss_fn
from .optim import WeightEMA, adamw, clip_gradients, freeze_batchnorm, warmup_cosine
from .settings import TrainSettings
from .state import save_state

__all__ = ["EarlyStopping", "TrainingRun", "evaluate", "fit"]

log = logging.getLogger(__name__)


def evaluate(network, validation, loss_fn, device, batch_size: int, phases=None) -> dict:
    """Validation loss and scores: Ni IoU and Dice (binary), per-phase IoU (``phases``).

    Examples
    --------
    >>> from volseg.training.losses import loss_fn
    >>> network = torch.nn.Conv2d(1, 1, 1)
    >>> images = torch.ones(2, 1, 4, 4)
    >>> targets = (images > 0).float()
    >>> with torch.no_grad():
    ...     _ = network.bias.fill_(5.0)
    >>> scores = evaluate(network, (images, targets), loss_fn("bce"), "cpu", 1)
    >>> scores["val_ni_iou"], scores["val_dice"]
    (1.0, 1.0)
    """
    images, targets = validation
    network.eval()
    total_loss, counts = 0.0, {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    classes = list(range(len(phases or {})))
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            image = images[start : start + batch_size].to(device)
            target = targets[start : start + batch_size].to(device)
            logits = network(image)
            total_loss += float(loss_fn(logits, target)) * len(image)
            target = target.cpu().numpy()
            if phases is not None:
                predicted = logits.argmax(dim=1).cpu().numpy()
                confusion += metrics.confusion_matrix(target, predicted, classes)
                continue
            labelled = target >= 0
            batch_counts = metrics.confusion_counts(
                (logits > 0).cpu().numpy()[labelled], target[labelled] > 0.5
            )
            for key in counts:
                counts[key] += batch_counts[key]
    row = {"val_loss": total_loss / len(images)}
    if phases is None:
        scores = metrics.pooled_scores(**counts)
        return {**row, "val_ni_iou": scores["ni_iou"], "val_dice": scores["ni_dice"]}
    scores = metrics.phase_scores(confusion, list(phases))
    row.update(val_ni_iou=scores["iou"]["ni"], val_mean_iou=scores["mean_iou"])
    row.update({f"val_iou_{name}": value for name, value in scores["iou"].items()})
    return row


@dataclass
class EarlyStopping:
    """The best score so far and how many epochs have passed without beating it.

    Examples
    --------
    >>> stopping = EarlyStopping(patience=2)
    >>> [stopping.update(epoch, score) for epoch, score in enumerate([0.5, 0.7, 0.6, 0.6], 1)]
    [True, True, False, False]
    >>> stopping.best_epoch, stopping.exhausted
    (2, True)
    """

    patience: int
    best: float = -1.0
    best_epoch: int = 0
    stale: int = 0

    @classmethod
    def from_history(cls, patience: int, history: list[dict], monitor: str) -> EarlyStopping:
        """Resume the count from earlier epochs' rows (their best ``monitor`` score)."""
        if not history:
            return cls(patience)
        best = max(history, key=lambda h: h[monitor])
        return cls(patience, max(h[monitor] for h in history), best["epoch"])

    def update(self, epoch: int, score: float) -> bool:
        """Record an epoch's score; True if it is the best so far."""
        if score > self.best:
            self.best, self.best_epoch, self.stale = score, epoch, 0
            return True
        self.stale += 1
        return False

    @property
    def exhausted(self) -> bool:
        """Whether ``patience`` epochs have passed without a better score."""
        return self.stale >= self.patience


@dataclass
class TrainingRun:
    """What the optimiser steps touch, and where the schedule stands.

    ``ema`` (or None) is the moving average that is validated and saved (``scored``).
    The learning rate of step ``s`` is ``settings.lr * warmup_cosine(s, total_steps,
    warmup_steps)``. Built by :meth:`start` and run by :func:`fit`.

    Examples
    --------
    Three steps of a one-layer network on crops of a striped volume:

    >>> from volseg.training.data import open_pairs
    >>> labels = (np.indices((10, 64, 64)).sum(axis=0) % 7 == 0).astype(np.uint8)
    >>> crops = Crops(open_pairs(labels * 100.0, labels, 0.2, 2), tile=32, ni_label=1)
    >>> crops.normalisation = crops.sample_normalisation(np.random.default_rng(0))
    >>> settings = TrainSettings(tile=32, batch_size=2, epochs=1, steps_per_epoch=3, loss="bce")
    >>> network = torch.nn.Conv2d(1, 1, 3, padding=1)
    >>> run = TrainingRun.start(settings, network, crops, torch.device("cpu"))
    >>> loss, timed_out = run.train_epoch(np.random.default_rng(0), out_of_time=lambda: False)
    >>> run.step, timed_out, run.schedule()["total_steps"]
    (3, False, 3)
    """

    settings: TrainSettings
    network: torch.nn.Module
    optimiser: torch.optim.Optimizer
    trainable: list
    scaler: Any
    ema: WeightEMA | None
    loss_fn: Loss
    crops: Crops
    device: torch.device
    autocast: torch.dtype | None
    total_steps: int
    warmup_steps: int
    step: int = 0

    @classmethod
    def start(
        cls,
        settings: TrainSettings,
        network: torch.nn.Module,
        crops: Crops,
        device: torch.device,
        autocast: torch.dtype | None = None,
        resumed: dict | None = None,
    ) -> TrainingRun:
        """Optimiser, loss scaling and moving average, restored from ``resumed`` if given.

        ``settings`` are resolved (loss, classes and steps per epoch decided);
        ``autocast`` is the dtype of the forward passes (None: float32); ``resumed``
        is the state of an unfinished run (:func:`~volseg.training.state.load_state`).
        """
        scaler = torch.amp.GradScaler(enabled=autocast is torch.float16 and device.type == "cuda")
        if resumed is not None:
            total_steps = int(resumed["schedule"]["total_steps"])
        else:
            total_steps = settings.epochs * settings.steps_per_epoch
        optimiser, trainable = adamw(network, settings.lr, settings.weight_decay)
        ema = None if settings.ema_decay is None else WeightEMA(network, settings.ema_decay)
        step = 0
        if resumed is not None:
            optimiser.load_state_dict(resumed["optimiser"])
            step = int(resumed["schedule"]["step"])
            if ema is not None and resumed.get("ema") is not None:
                ema.load_state_dict(resumed["ema"])
        return cls(
            settings,
            network,
            optimiser,
            trainable,
            scaler,
            ema,
            loss_fn(settings.loss, int(settings.classes)),
            crops,
            device,
            autocast,
            total_steps,
            int(round(settings.warmup * total_steps)),
            step,
        )

    @property
    def scored(self) -> torch.nn.Module:
        """The network that is validated and saved: the moving average if there is one."""
        return self.network if self.ema is None else self.ema.module

    def schedule(self) -> dict:
        """The learning-rate schedule, as recorded in the checkpoint."""
        lr = self.settings.lr
        return {
            "name": "warmup+cosine",
            "lr": lr,
            "min_lr": lr * 0.01,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.settings.steps_per_epoch,
        }

    def train_epoch(self, rng: np.random.Generator, out_of_time) -> tuple[float, bool]:
        """One epoch of steps: the mean loss, and whether ``out_of_time()`` cut it short."""
        settings = self.settings
        self.network.train()
        if settings.freeze_encoder:
            self.network.encoder.eval()  # frozen also means BatchNorm statistics stay as loaded
        if settings.small_batch and self.step >= self.warmup_steps:
            freeze_batchnorm(self.network)
        total, steps_done = 0.0, 0
        for _ in range(settings.steps_per_epoch):
            if self.step >= self.total_steps:
                break  # a resumed schedule ends mid-epoch where it was planned to end
            if steps_done and out_of_time():
                return total / max(1, steps_done), True
            total += self._train_step(rng)
            steps_done += 1
        return total / max(1, steps_done), False

    def _train_step(self, rng: np.random.Generator) -> float:
        settings, optimiser = self.settings, self.optimiser
        factor = warmup_cosine(self.step, self.total_steps, self.warmup_steps)
        for group in optimiser.param_groups:
            group["lr"] = settings.lr * factor
        image, target = self.crops.random_batch(rng, settings.batch_size, settings.augment)
        image, target = image.to(self.device), target.to(self.device)
        optimiser.zero_grad(set_to_none=True)
        autocast = self.autocast
        with torch.autocast(self.device.type, autocast, enabled=autocast is not None):
            logits = self.network(image)
        batch_loss = self.loss_fn(logits.float(), target)
        self.scaler.scale(batch_loss).backward()
        clip_gradients(self.scaler, optimiser, self.trainable, settings.grad_clip)
        self.scaler.step(optimiser)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.network)
        self.step += 1
        if settings.small_batch and self.step == self.warmup_steps:
            freeze_batchnorm(self.network)
        return float(batch_loss.detach())

    def state(self, history: list[dict], finished: bool) -> dict:
        """The resumable training state (see :func:`volseg.training.state.state_path`)."""
        return {
            "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "ema": None if self.ema is None else self.ema.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "schedule": {**self.schedule(), "step": self.step},
            "batch_size": self.settings.batch_size,
            "history": history,
            "finished": finished,
        }


def fit(
    run: TrainingRun,
    validation: tuple,
    out: Path,
    config: dict,
    record: dict,
    history: list[dict],
    rng: np.random.Generator,
    started_at: float,
) -> tuple[EarlyStopping, str]:
    """Train ``settings.epochs`` epochs (fewer: early stopping, ``max_time``, end of schedule).

    After each epoch the scored network is validated; a better score saves the
    checkpoint ``out`` (with ``record`` and the ``history``, which grows by one row
    per epoch), and the training state is written. Returns the stopping record and
    why training stopped: ``"epochs"``, ``"patience"`` or ``"max_time"``.

    Examples
    --------
    One epoch of a small U-Net (the crops as in :class:`TrainingRun`):

    >>> from volseg.training.data import open_pairs
    >>> labels = (np.indices((10, 64, 64)).sum(axis=0) % 7 == 0).astype(np.uint8)
    >>> crops = Crops(open_pairs(labels * 100.0, labels, 0.2, 2), tile=32, ni_label=1)
    >>> rng = np.random.default_rng(0)
    >>> config = vmodel.default_config(encoder="resnet18", tile=32, encoder_depth=3,
    ...     decoder_channels=[8, 8, 8], normalisation=crops.sample_normalisation(rng))
    >>> crops.normalisation = config["normalisation"]
    >>> settings = TrainSettings(tile=32, batch_size=2, epochs=1, steps_per_epoch=2,
    ...                          loss="bce", progress=False)
    >>> run = TrainingRun.start(settings, vmodel.build_unet(config), crops, torch.device("cpu"))
    >>> out, history = getfixture("tmp_path") / "unet.pt", []
    >>> validation = crops.validation_tiles(8, rng)
    >>> stopping, stopped = fit(run, validation, out, config, {}, history, rng, time.perf_counter())
    >>> len(history), stopped, stopping.best_epoch, out.is_file()
    (1, 'epochs', 1, True)
    """
    settings, monitor = run.settings, run.settings.monitor
    stopping = EarlyStopping.from_history(settings.patience, history, monitor)
    budget, validation_seconds = settings.time_budget, 0.0

    def out_of_time() -> bool:
        elapsed = time.perf_counter() - started_at + validation_seconds
        return budget is not None and elapsed >= budget

    from tqdm.auto import tqdm

    first = len(history) + 1
    bar = tqdm(range(first, first + settings.epochs), desc="train", disable=not settings.progress)
    stopped = "epochs"
    for epoch in bar:
        started = time.perf_counter()
        loss, timed_out = run.train_epoch(rng, out_of_time)
        if timed_out:
            stopped = "max_time"
        validating = time.perf_counter()
        scores = evaluate(
            run.scored, validation, run.loss_fn, run.device, settings.batch_size, settings.phases
        )
        validation_seconds = time.perf_counter() - validating
        row = {
            "epoch": epoch,
            "loss": loss,
            **scores,
            "lr": run.optimiser.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", val_iou=f"{row[monitor]:.3f}")
        log.info("epoch %d: %s", epoch, row)
        if stopping.update(epoch, scores[monitor]):
            training = {**record, "history": history, "best_epoch": epoch, "val": scores}
            vmodel.save_checkpoint(run.scored, config, out, training=training, overwrite=True)
        elif stopping.exhausted:
            log.info("early stop after epoch %d (best %d)", epoch, stopping.best_epoch)
            stopped = "patience"
        finished = stopped == "patience" or run.step >= run.total_steps
        save_state(out, run.state(history, finished))
        if stopped != "epochs":
            if stopped == "max_time":
                log.info("max_time reached after epoch %d (best %d)", epoch, stopping.best_epoch)
            break
    bar.close()
    return stopping, stopped
