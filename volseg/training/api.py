"""``train()``: fine-tune the U-Net on labelled volumes.

Random ``tile x tile`` crops are read lazily from the training volumes (small
volumes are cached in memory, large ones stay in Zarr), the validation set is a
held-out slab of slices at the end of each volume (spatially separate from the
training slices, with a gap), and training stops early on the validation Ni IoU
(Ni class alone), keeping the best checkpoint.

The steps: the settings (:mod:`~volseg.training.settings`) -> the data
(:mod:`~volseg.training.data`, :mod:`~volseg.training.crops`) -> the network and
optimiser (:mod:`~volseg.training.optim`) -> the loop
(:mod:`~volseg.training.loop`) -> the checkpoint, its state and history
(:mod:`~volseg.training.state`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import model as vmodel
from ..model.config import DEFAULT_ENCODER, DEFAULT_ENCODER_DEPTH, DEFAULT_TILE
from ..model.precision import resolve_precision
from .crops import Crops
from .data import (
    check_phases_present,
    neighbours_look_related,
    open_pairs,
    resolve_context,
    sparse_split,
    training_phases,
)
from .loop import TrainingRun, fit
from .optim import freeze_encoder_parameters
from .settings import TrainSettings, loss_for
from .state import TrainResult, load_state, write_history

__all__ = ["TrainResult", "train"]

log = logging.getLogger(__name__)


def train(
    images: Any,
    labels: Any,
    out: str | Path,
    encoder: str = DEFAULT_ENCODER,
    encoder_weights: str | Path | None = None,
    freeze_encoder: bool = False,
    ni_label: float | None = None,
    tile: int = DEFAULT_TILE,
    batch_size: int = 16,
    epochs: int = 100,
    lr: float = 1e-3,
    loss: str | None = None,
    augment: bool = True,
    val_fraction: float = 0.2,
    patience: int = 10,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    *,
    steps_per_epoch: int | None = None,
    val_gap: int = 2,
    val_tiles: int = 256,
    encoder_depth: int = DEFAULT_ENCODER_DEPTH,
    decoder_channels: list[int] | None = None,
    resume_from: str | Path | None = None,
    overwrite: bool = False,
    classes: int = 1,
    phases: dict[str, int] | None = None,
    ignore_label: float | None = None,
    weight_decay: float = 1e-4,
    warmup: float = 0.05,
    grad_clip: float | None = 1.0,
    ema_decay: float | None = 0.999,
    max_time: str | float | None = None,
    precision: str = "fp32",
    context: int | str = "auto",
    labelled_slices: Any = None,
    settings: TrainSettings | None = None,
) -> TrainResult:
    """Train (fine-tune) the Ni U-Net on labelled volumes.

    Parameters
    ----------
    images, labels : path, array, or list of them
        Grey-value volumes and their labels (Zarr path/group/array, TIFF stack,
        numpy or dask), one label volume per image volume.
    out : path
        Checkpoint to write (the best epoch). ``<out>.history.csv`` and
        ``<out>.history.png`` are written beside it.
    encoder : str
        segmentation-models-pytorch encoder ("vgg16" as in the study, "resnet18", ...).
    encoder_weights : None, "imagenet" or path
        Encoder initialisation; "imagenet" needs the network, a local file does not.
    freeze_encoder : bool
        Train the decoder only (the encoder keeps its pretrained weights).
    ni_label : number, optional
        Value of Ni in ``labels``; default from the labels' attrs, else 1.
    tile, batch_size, epochs, lr : int, int, int, float
        Crop size, crops per step, maximum epochs, peak learning rate of AdamW (reached
        after the warm-up, then decayed along a cosine to 1 % of it at the last step).
    loss : {"bce+dice", "bce", "dice", "ce+dice", "ce"}, optional
        Default ``"bce+dice"`` (binary) or ``"ce+dice"`` (multi-class: cross-entropy
        plus the soft Dice loss averaged over the classes).
    augment : bool
        Flips, 90-degree rotations and intensity jitter of the training crops.
    val_fraction : float
        Share of each volume's slices held out (the last ones) for validation.
    patience : int
        Stop after this many epochs without a better validation Ni IoU.
    seed : int
        Seeds crops, augmentation and initialisation.
    device : str
        "auto", "cpu", "cuda" or "cuda:i".
    progress : bool
        Show a progress bar.
    steps_per_epoch : int, optional
        Batches per epoch; default: enough crops to cover the training slices once.
    val_gap : int
        Slices left out between the training and validation slabs.
    val_tiles : int
        At most this many validation tiles.
    encoder_depth, decoder_channels
        Network size (defaults: 5 and smp's ``[256, 128, 64, 32, 16]``).
    resume_from : path, optional
        Continue from this checkpoint (weights, config and history). When the run that
        wrote it stopped before the end of its schedule (``max_time``, or killed), its
        training state (:func:`~volseg.training.state.state_path`: live and averaged weights,
        optimiser,
        schedule position) is restored and the schedule continues to its planned end;
        otherwise a new schedule of ``epochs`` epochs starts from its weights.
    overwrite : bool
        Replace an existing ``out``.
    classes : int
        1: a binary Ni model (sigmoid). 3 (or more): one class per phase (softmax),
        for example pore, YSZ and Ni; early stopping then follows the mean IoU over
        the phases, and label values not in ``phases`` are ignored as unlabelled.
    phases : dict, optional
        ``{name: label value}`` of the classes, in class order; must include
        ``"ni"``. Default: the phases recorded in the labels' attrs (volseg.synth
        records ``{"pore": 0, "ysz": 1, "ni": 2}``), else that mapping.
    ignore_label : number, optional
        Label value of unlabelled voxels (partly labelled slices): left out of the
        loss and of the validation scores. A multi-class model also ignores every
        value that is not one of its phases.
    weight_decay : float
        AdamW's decoupled weight decay.
    warmup : float
        Share of the schedule's steps over which the learning rate rises linearly to ``lr``.
    grad_clip : float or None
        Largest gradient norm (the gradients of a step are scaled down to it); None: off.
    ema_decay : float or None
        Decay of the exponential moving average of the weights (and BatchNorm
        statistics); the average is what is validated and saved. None: the raw weights.
        Batches smaller than 8 crops also keep BatchNorm statistics fixed after the warm-up.
    max_time : str or float, optional
        Wall-time budget such as ``"2h"``, ``"90m"``, ``"1h30m"`` or seconds: training
        stops in time to validate and save (the best checkpoint stays), and
        ``resume_from`` continues the schedule later.
    precision : {"fp32", "auto", "bf16", "fp16"}
        Autocast dtype of the training forward passes (weights, optimiser and loss stay
        float32; fp16 on CUDA with loss scaling); ``"auto"`` as in
        :func:`volseg.model.precision.resolve_precision`. Validation runs in float32.
    context : int or "auto"
        Through-plane context (2.5D): each crop is given with its ``context``
        neighbouring slices on either side as extra input channels (mirrored at the
        volume's z border), ``2 * context + 1`` in all. Recorded in the checkpoint's
        config; :func:`volseg.segment` reads it from there. 0: plain 2D slices.
        ``"auto"`` (default): 1 when every training image is a volume of at least 3
        slices whose neighbouring slices look alike, else 0 (with a warning for a
        stack of slices from scattered places); when resuming, the checkpoint's.
    labelled_slices : list of int, or one list per volume, optional
        Sparse labels: only these z-slices are labelled. Training crops are drawn from
        them alone and the last ``val_fraction`` of them (at least one) are held out
        for validation; with one or two labelled slices, each is used for both. Without it, when
        ``ignore_label`` is given and some slices hold nothing but ``ignore_label``, the
        slices holding labels are found and used the same way.
    settings : TrainSettings, optional
        All of the above (apart from ``images``, ``labels`` and ``out``) in one
        object, instead of one by one (not both).

    Returns
    -------
    TrainResult

    Examples
    --------
    A toy run with a small network (real training: ``epochs`` in the tens, ``tile=128``,
    see ``docs/`` and ``volseg train``):

    >>> rng = np.random.default_rng(0)
    >>> labels = (rng.random((6, 32, 32)) < 0.4).astype(np.uint8)
    >>> image = labels * 1000.0 + rng.normal(0, 100, labels.shape)
    >>> result = train(image, labels, getfixture("tmp_path") / "unet.pt", encoder="resnet18",
    ...                encoder_depth=3, decoder_channels=[32, 16, 8], tile=32, batch_size=2,
    ...                epochs=2, steps_per_epoch=1, device="cpu", progress=False)
    >>> len(result.history), result.path.name, result.config["tile"]
    (2, 'unet.pt', 32)
    >>> from volseg.model import load_checkpoint
    >>> load_checkpoint(result.path).training["best_epoch"] == result.best_epoch
    True
    >>> sorted(p.name for p in result.path.parent.iterdir())
    ['unet.pt', 'unet.pt.history.csv', 'unet.pt.history.png', 'unet.pt.state.pt']
    """
    arguments = dict(locals())
    started_at = time.perf_counter()
    settings = _settings(arguments, settings)
    out = _check_out(Path(out), settings)
    device = vmodel.resolve_device(settings.device)
    autocast = vmodel.AUTOCAST_DTYPES[resolve_precision(settings.precision, device)]
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    pairs = open_pairs(
        images,
        labels,
        settings.val_fraction,
        settings.val_gap,
        settings.labelled_slices is not None,
    )
    sparse_split(pairs, settings.labelled_slices, settings.ignore_label, settings.val_fraction)
    previous = None
    if settings.resume_from is not None:
        previous = vmodel.load_checkpoint(settings.resume_from, device)
    settings = _resolved(settings, pairs, previous)
    crops = Crops(
        pairs,
        previous.config["tile"] if previous else settings.tile,
        settings.ni_label,
        phases=settings.phases,
        ignore_label=settings.ignore_label,
    )
    config, network, history = _network(settings, previous, crops, rng)
    network.to(device)
    freeze_encoder_parameters(network, settings.freeze_encoder)
    if previous is not None and Path(settings.resume_from).resolve() != out.resolve():
        # The resumed weights are the best so far until an epoch beats them.
        vmodel.save_checkpoint(network, config, out, training=previous.training, overwrite=True)
    validation = _validation(crops, config, settings)
    if settings.steps_per_epoch is None:
        train_pixels = sum(p.train_count() * np.prod(p.image.shape[1:]) for p in pairs)
        crop = config["tile"]
        steps = int(np.clip(train_pixels / (settings.batch_size * crop * crop), 4, 500))
        settings = replace(settings, steps_per_epoch=steps)
    resumed = None
    if previous is not None:
        resumed = load_state(Path(settings.resume_from), len(history))
    if resumed is not None:
        network.load_state_dict(resumed["network"])
        history = list(resumed["history"])
        settings = settings.resumed(resumed)
        rng = np.random.default_rng([settings.seed, len(history)])
    run = TrainingRun.start(settings, network, crops, device, autocast, resumed)
    record = settings.to_record([p.name for p in pairs], [p.split() for p in pairs], run.schedule())
    stopping, stopped = fit(run, validation, out, config, record, history, rng, started_at)
    table = pd.DataFrame(history)
    write_history(out, table, stopping.best_epoch)
    vmodel.update_training(out, {"history": history, "stopped": stopped, "steps": run.step})
    return TrainResult(out, table, int(stopping.best_epoch), float(stopping.best), config)


def _settings(arguments: dict, settings: TrainSettings | None) -> TrainSettings:
    """The settings of :func:`train`: its parameters, or ``settings`` if given instead."""
    given = TrainSettings(**{field.name: arguments[field.name] for field in fields(TrainSettings)})
    if settings is None:
        return given
    if given != TrainSettings():
        raise ValueError(
            "give train() its settings one by one or as settings=TrainSettings(...), not both."
        )
    return settings


def _check_out(out: Path, settings: TrainSettings) -> Path:
    if out.is_dir():
        raise ValueError(
            f"model file {str(out)!r} is a folder; give a file name, e.g. '{out}/unet.pt'."
        )
    if not out.parent.is_dir():
        raise FileNotFoundError(
            f"model file {str(out)!r}: its folder {str(out.parent)!r} does not exist; "
            "create it first."
        )
    resume_from = settings.resume_from
    if (
        out.exists()
        and not settings.overwrite
        and (resume_from is None or Path(resume_from) != out)
    ):
        raise FileExistsError(
            f"model file {str(out)!r} already exists; pass overwrite=True (--overwrite) "
            "to replace it, or resume_from to continue training it."
        )
    return out


def _resolved(settings: TrainSettings, pairs: list, previous: Any) -> TrainSettings:
    """The settings with Ni label, classes, phases and loss decided by the data or checkpoint."""
    ni_label = settings.ni_label
    if ni_label is None:
        ni_label = 1 if pairs[0].recorded_ni is None else pairs[0].recorded_ni
    classes, phases, loss = settings.classes, settings.phases, settings.loss
    if previous is not None:
        # The checkpoint decides the classes; its loss unless another one is asked for.
        classes = int(previous.config["classes"])
        phases = vmodel.model_phases(previous.config)
        loss = loss or TrainSettings.from_record(previous.training).loss
    loss = loss_for(loss, classes)
    depths = [pair.image.shape[0] for pair in pairs]
    related = True
    if settings.context == "auto" and previous is None and min(depths) >= 3:
        for pair in pairs:
            looks_related, score = neighbours_look_related(pair.image)
            if not looks_related:
                log.warning(
                    "training image %s: neighbouring slices look unrelated (median "
                    "correlation %.2f), as in a stack of slices from scattered places; "
                    "context='auto' trains a 2D model (context=0). Give context=1 if they "
                    "are neighbours.",
                    pair.name,
                    score,
                )
                related = False
    context = resolve_context(
        settings.context,
        depths,
        None if previous is None else vmodel.model_context(previous.config),
        related,
    )
    if settings.context == "auto":
        log.info("through-plane context: %d slice(s) per side (context='auto')", context)
    if previous is None and classes > 1:
        phases = training_phases(phases, pairs, classes)
    ignore_label = settings.ignore_label
    if ignore_label is not None and (
        ignore_label == ni_label or ignore_label in (phases or {}).values()
    ):
        raise ValueError(
            f"ignore_label={ignore_label!r} is also the value of Ni or of a phase; unlabelled "
            "voxels need a value of their own."
        )
    return replace(
        settings, ni_label=ni_label, classes=classes, phases=phases, loss=loss, context=context
    )


def _network(settings: TrainSettings, previous: Any, crops: Crops, rng) -> tuple:
    """Config, network and history: the resumed checkpoint's, or a new U-Net's."""
    if previous is not None:
        return previous.config, previous.network, list(previous.training.get("history", []))
    config = vmodel.default_config(
        encoder=settings.encoder,
        tile=settings.tile,
        encoder_depth=settings.encoder_depth,
        decoder_channels=settings.decoder_channels
        or vmodel.default_decoder_channels(settings.encoder_depth),
        normalisation=crops.sample_normalisation(rng),
        classes=int(settings.classes),
        context=settings.context,
        labels=(
            {"ni_label": 1, "names": {"0": "background", "1": "Ni"}}
            if settings.phases is None
            else {"phases": settings.phases}
        ),
    )
    return config, vmodel.build_unet(config, encoder_weights=settings.encoder_weights), []


def _validation(crops: Crops, config: dict, settings: TrainSettings) -> tuple:
    """The fixed validation tiles, checked to hold Ni (and the phases)."""
    crops.normalisation = config["normalisation"]
    crops.context = vmodel.model_context(config)
    validation = crops.validation_tiles(
        settings.val_tiles, np.random.default_rng(settings.seed + 1)
    )
    if validation is None:
        raise ValueError("no validation tiles: increase val_fraction or give more slices.")
    if settings.phases is not None:
        check_phases_present(validation[1], settings.phases)
    if settings.phases is None and not bool((validation[1] > 0.5).any()):
        raise ValueError(
            f"the validation slabs hold no Ni (label {settings.ni_label}); Ni IoU cannot be "
            "measured: check ni_label, or hold out slices that contain Ni (val_fraction)."
        )
    return validation
