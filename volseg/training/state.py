"""What a training run leaves: its result, the resumable state and the history.

``<out>.state.pt`` (:func:`state_path`) holds the last epoch's live weights,
their moving average, the optimiser's moments and the schedule's position;
``<out>.history.csv`` and ``<out>.history.png``
(:func:`volseg.conventions.history_paths`) the scores of every epoch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..conventions import history_paths
from ..report import training_curves

__all__ = [
    "TRAIN_STATE_FORMAT",
    "TrainResult",
    "load_state",
    "save_state",
    "state_path",
    "write_history",
]

TRAIN_STATE_FORMAT = "volseg.trainstate/1"


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    path : pathlib.Path
        The best checkpoint.
    history : pandas.DataFrame
        One row per epoch: ``epoch``, ``loss``, ``val_loss``, ``val_ni_iou``,
        ``val_dice``, ``lr``, ``seconds``; a multi-class model has ``val_mean_iou``
        and ``val_iou_<phase>`` instead of ``val_dice``.
    best_epoch : int
    best_val_ni_iou : float
        The best monitored validation score: Ni IoU of a binary model, the mean
        IoU over the phases of a multi-class one (early stopping follows it).
    config : dict
        The model configuration stored in the checkpoint.

    Examples
    --------
    Two epochs of one step each on a tiny volume (label 1 = Ni):

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = (rng.random((6, 32, 32)) < 0.4).astype(np.uint8)
    >>> image = labels * 1000.0 + rng.normal(0, 100, labels.shape)
    >>> from volseg import train
    >>> result = train(image, labels, getfixture("tmp_path") / "unet.pt", encoder="resnet18",
    ...                encoder_depth=3, decoder_channels=[32, 16, 8], tile=32, batch_size=2,
    ...                epochs=2, steps_per_epoch=1, device="cpu", progress=False)
    >>> result.history.columns.tolist()
    ['epoch', 'loss', 'val_loss', 'val_ni_iou', 'val_dice', 'lr', 'seconds']
    >>> result.best_val_ni_iou == float(result.history["val_ni_iou"].max())
    True
    """

    path: Path
    history: pd.DataFrame
    best_epoch: int
    best_val_ni_iou: float
    config: dict


def state_path(out: str | Path) -> Path:
    """The resumable training state written beside a checkpoint: ``<out>.state.pt``.

    It holds the last epoch's live weights, their moving average, the optimiser's
    moments and the schedule's position, so that ``resume_from=out`` continues an
    unfinished schedule where it stopped (for example at ``max_time``).

    Examples
    --------
    >>> state_path("runs/unet.pt").name
    'unet.pt.state.pt'
    """
    out = Path(out)
    return out.with_name(out.name + ".state.pt")


def save_state(out: Path, payload: dict) -> None:
    """Write the training state of checkpoint ``out`` atomically (see :func:`state_path`).

    Examples
    --------
    >>> out = getfixture("tmp_path") / "unet.pt"
    >>> save_state(out, {"history": [], "finished": False})
    >>> load_state(out, 0)["format"]
    'volseg.trainstate/1'
    """
    path = state_path(out)
    tmp = path.with_name(path.name + ".partial")
    torch.save({"format": TRAIN_STATE_FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load_state(resume_from: Path, history_length: int) -> dict | None:
    """The state of an unfinished schedule that belongs to the resumed checkpoint, or None.

    Examples
    --------
    >>> out = getfixture("tmp_path") / "unet.pt"
    >>> save_state(out, {"history": [{"epoch": 1}], "finished": True})
    >>> load_state(out, 1) is None  # the schedule ended: a new one starts
    True
    """
    path = state_path(resume_from)
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != TRAIN_STATE_FORMAT or state.get("finished", True):
        return None
    if len(state.get("history", [])) < history_length:
        return None  # an older state than the checkpoint: do not go back in time
    return state


def write_history(out: Path, table: pd.DataFrame, best_epoch: int) -> None:
    """Write the history of checkpoint ``out`` as CSV and as a plot of its curves.

    Examples
    --------
    >>> out = getfixture("tmp_path") / "unet.pt"
    >>> table = pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.4], "val_loss": [0.6, 0.5],
    ...                       "val_ni_iou": [0.7, 0.8], "val_dice": [0.8, 0.9]})
    >>> write_history(out, table, best_epoch=2)
    >>> [path.is_file() for path in history_paths(out)]
    [True, True]
    """
    csv, png = history_paths(out)
    table.to_csv(csv, index=False)
    training_curves(table, png, best_epoch=best_epoch)
