"""``volseg train``: its options and the call of :func:`volseg.train`.

Defaults and choices come from :class:`volseg.training.settings.TrainSettings` (numpy
at most); the library (torch) is imported only when the command runs.

>>> import argparse
>>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
>>> add_train(sub)
>>> args = sub.choices["train"].parse_args(["train.zarr", "--out", "ni.pt"])
>>> args.volumes, args.encoder, args.epochs
(['train.zarr'], 'vgg16', 100)
"""

from __future__ import annotations

import argparse

from volseg.training.settings import LOSSES, TrainSettings

from .options import add_phases, add_precision, context_slices, label_number, parse_phases

__all__ = ["add_train"]

DEFAULTS = TrainSettings()  # the defaults of volseg.train


def add_train(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` command to the subcommands ``sub``.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
    >>> add_train(sub)
    >>> args = sub.choices["train"].parse_args(
    ...     ["image.zarr", "labels.zarr", "--out", "ni.pt", "--classes", "3"])
    >>> args.volumes, args.classes, args.loss
    (['image.zarr', 'labels.zarr'], 3, None)
    """
    p = sub.add_parser(
        "train",
        help="train (fine-tune) the U-Net on labelled volumes",
        description="Train the Ni U-Net on labelled volumes. Give IMAGE LABELS pairs, or one "
        "Zarr group holding 'image' and 'labels' arrays (as `volseg synth` writes).",
    )
    p.add_argument(
        "volumes",
        nargs="+",
        metavar="VOLUME",
        help="IMAGE LABELS [IMAGE LABELS ...], or one group with image + labels",
    )
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    _model_options(p)
    _schedule_options(p)
    _label_options(p)
    _network_options(p)
    p.add_argument("--resume-from", default=None, help="continue training this checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_train)


def _model_options(p: argparse.ArgumentParser) -> None:
    """The encoder to start from, the Ni label, and the crops it is trained on."""
    p.add_argument("--encoder", default=DEFAULTS.encoder, help="smp encoder (vgg16, resnet18, ...)")
    p.add_argument(
        "--encoder-weights",
        default=None,
        help="'imagenet' (needs the network) or a local encoder weights file",
    )
    p.add_argument("--freeze-encoder", action="store_true", help="train the decoder only")
    p.add_argument(
        "--ni-label",
        type=label_number,
        default=None,
        help="value of Ni in the labels (default: from their attrs, else 1)",
    )
    p.add_argument(
        "--tile", type=int, default=DEFAULTS.tile, help="training crop size, multiple of 32"
    )
    p.add_argument(
        "--batch-size", type=int, default=DEFAULTS.batch_size, help="crops per optimiser step"
    )


def _schedule_options(p: argparse.ArgumentParser) -> None:
    """How long and how fast it learns: epochs, learning rate, EMA, context, time budget."""
    p.add_argument(
        "--epochs",
        type=int,
        default=DEFAULTS.epochs,
        help="maximum epochs (early stopping may end sooner)",
    )
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="batches per epoch (default: enough to cover the training slices once, 4..500)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=DEFAULTS.lr,
        help="peak AdamW learning rate (warm-up, then cosine)",
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        default=DEFAULTS.weight_decay,
        help=f"AdamW weight decay ({DEFAULTS.weight_decay})",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=DEFAULTS.warmup,
        help=f"share of the steps spent warming up ({DEFAULTS.warmup})",
    )
    p.add_argument(
        "--grad-clip",
        type=float,
        default=DEFAULTS.grad_clip,
        help=f"largest gradient norm per step ({DEFAULTS.grad_clip})",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        default=DEFAULTS.ema_decay,
        help=f"moving average of the weights, validated and saved ({DEFAULTS.ema_decay})",
    )
    p.add_argument("--no-ema", action="store_true", help="validate and save the raw weights")
    p.add_argument(
        "--context",
        type=context_slices,
        default=DEFAULTS.context,
        help="through-plane context (2.5D): K neighbouring slices per side as extra input "
        "channels (0: plain 2D; auto: 1 for volumes of 3 slices or more whose neighbouring "
        "slices look alike, else 0); segment reads it from the checkpoint (auto)",
    )
    p.add_argument(
        "--max-time",
        default=None,
        help="wall-time budget, e.g. 2h, 90m, 1h30m or seconds: stop in time with the best "
        "checkpoint (--resume-from continues the schedule)",
    )


def _label_options(p: argparse.ArgumentParser) -> None:
    """What is learnt from the labels: loss, classes, phases, sparse labels, validation."""
    p.add_argument(
        "--loss",
        choices=list(LOSSES),
        default=None,
        help="training loss (default: bce+dice with --classes 1, ce+dice with 3)",
    )
    p.add_argument(
        "--classes",
        type=int,
        default=DEFAULTS.classes,
        help="1: binary Ni model; 3: pore/YSZ/Ni model (phases from the labels' attrs, "
        "else pore=0 ysz=1 ni=2)",
    )
    add_phases(p, "+", "label value of each phase, in class order, e.g. pore=0 ysz=128 ni=255")
    p.add_argument(
        "--ignore-label",
        type=label_number,
        default=None,
        help="label value of unlabelled voxels (partly labelled slices), left out of the loss",
    )
    p.add_argument(
        "--labelled-slices",
        nargs="+",
        default=None,
        metavar="Z",
        help="sparse labels: the labelled z-slices (e.g. 0 40 80-83); training crops and "
        "validation use only these",
    )
    p.add_argument("--no-augment", action="store_true", help="no flips/rotations/jitter")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULTS.val_fraction,
        help=f"share of slices held out as a validation slab ({DEFAULTS.val_fraction})",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=DEFAULTS.patience,
        help="early-stopping patience (epochs)",
    )
    p.add_argument(
        "--seed", type=int, default=DEFAULTS.seed, help="seeds crops, augmentation, weights"
    )


def _network_options(p: argparse.ArgumentParser) -> None:
    """The shape of the U-Net and where and in which precision it trains."""
    p.add_argument(
        "--encoder-depth", type=int, default=DEFAULTS.encoder_depth, help="U-Net levels (3..5)"
    )
    p.add_argument(
        "--decoder-channels",
        type=int,
        nargs="+",
        default=None,
        help="one width per level (default: 256 128 64 32 16, cut to --encoder-depth)",
    )
    p.add_argument("--device", default=DEFAULTS.device, help="auto, cpu, cuda or cuda:N")
    add_precision(
        p,
        DEFAULTS.precision,
        "autocast of the training forward passes (fp32; auto: bf16 on CPUs with "
        "AMX/AVX512-BF16 and GPUs that support it, fp16 on other GPUs)",
    )


def _slice_list(items: list[str] | None) -> list[int] | None:
    """``["0", "40", "80-83"]`` -> ``[0, 40, 80, 81, 82, 83]`` (ranges inclusive)."""
    if items is None:
        return None
    slices: list[int] = []
    for item in items:
        for part in item.split(","):
            first, sep, last = part.partition("-")
            if not first.isdigit() or (sep and not last.isdigit()):
                raise ValueError(
                    f"--labelled-slices {item!r}: give slice indices or ranges, e.g. 0 40 80-83."
                )
            slices.extend(range(int(first), int(last or first) + 1))
    return slices


def _training_pairs(volumes: list[str]) -> tuple[list[str], list[str]]:
    if len(volumes) == 1:
        return [f"{volumes[0]}/image"], [f"{volumes[0]}/labels"]
    if len(volumes) % 2:
        raise ValueError(
            f"got {len(volumes)} volumes; give IMAGE LABELS pairs, or one group with "
            "'image' and 'labels' arrays."
        )
    return list(volumes[0::2]), list(volumes[1::2])


def _run_train(args: argparse.Namespace) -> int:
    from volseg.conventions import history_paths
    from volseg.training import train

    images, labels = _training_pairs(args.volumes)
    result = train(
        images,
        labels,
        args.out,
        encoder=args.encoder,
        encoder_weights=args.encoder_weights,
        freeze_encoder=args.freeze_encoder,
        ni_label=args.ni_label,
        tile=args.tile,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        loss=args.loss,
        augment=not args.no_augment,
        val_fraction=args.val_fraction,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        steps_per_epoch=args.steps_per_epoch,
        encoder_depth=args.encoder_depth,
        decoder_channels=args.decoder_channels,
        resume_from=args.resume_from,
        overwrite=args.overwrite,
        classes=args.classes,
        phases=parse_phases(args.phases),
        ignore_label=args.ignore_label,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        grad_clip=args.grad_clip,
        ema_decay=None if args.no_ema else args.ema_decay,
        max_time=args.max_time,
        precision=args.precision,
        context=args.context,
        labelled_slices=_slice_list(args.labelled_slices),
    )
    csv, png = history_paths(result.path)
    score = "Ni IoU" if result.config["classes"] == 1 else "mean IoU over the phases"
    print(
        f"best checkpoint (epoch {result.best_epoch}, validation {score} "
        f"{result.best_val_ni_iou:.4f}) written to {result.path}"
    )
    context = int(result.config.get("context", 0))
    if context:
        print(
            f"input: each slice with {context} neighbouring slice(s) per side "
            f"(context={context}, {2 * context + 1} channels)"
        )
    else:
        print("input: single slices (context=0)")
    print(f"history: {csv} and {png}")
    return 0
