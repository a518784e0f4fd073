"""Training losses: (binary) cross-entropy and soft Dice, with unlabelled pixels ignored.

A binary model's target is a float 0/1 Ni mask with -1 where the labels hold
``ignore_label``; a multi-class model's target holds class indices with -1 for
unlabelled pixels. Either way the -1 pixels count for nothing.

The soft Dice terms are written out here rather than taken from
``segmentation_models_pytorch.losses.DiceLoss``: with ``smooth=0.5`` smp gives the
same value (to 2e-7) when every class occurs in the batch's labels, but it sets
the Dice term of a class absent from the batch to 0 (ours is ``1 - 1 / (sum(p) +
1)``, which still penalises predicting the class there): a batch of crops without
Ni would lose its Dice gradient (checked: 0.985 here, 0 in smp), and the float
rounding of its L1-norm intersection would change the trained weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["loss_fn", "multiclass_loss"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_fn(kind: str, classes: int = 1) -> Loss:
    """The training loss ``loss(logits, target)`` of a model with ``classes`` outputs.

    Parameters
    ----------
    kind : {"bce", "dice", "bce+dice", "ce", "ce+dice"}
        The terms: binary or multi-class cross-entropy, soft Dice, or their sum
        (see :func:`volseg.training.settings.loss_for`).
    classes : int
        1: a binary Ni model (sigmoid; targets ``(N, 1, H, W)`` float 0/1, -1
        ignored); 3 or more: softmax over the classes (:func:`multiclass_loss`).

    Returns
    -------
    callable
        ``loss(logits, target) -> scalar tensor``; pixels with target -1 are left
        out, and a batch without a labelled pixel gives 0.

    Examples
    --------
    >>> logits = torch.zeros(1, 1, 2, 2)
    >>> target = torch.tensor([[[[1.0, 0.0], [-1.0, -1.0]]]])
    >>> round(float(loss_fn("bce")(logits, target)), 4)  # log(2) over the labelled half
    0.6931
    >>> round(float(loss_fn("dice")(logits, target)), 4)  # 1 - (2 * 0.5 + 1) / (1 + 1 + 1)
    0.3333
    """
    if classes > 1:
        return multiclass_loss(kind)
    mean_bce = torch.nn.BCEWithLogitsLoss()

    def bce(logits, target):
        unlabelled = target < 0
        if not bool(unlabelled.any()):
            return mean_bce(logits, target)
        labelled = ~unlabelled
        if not bool(labelled.any()):
            return logits.sum() * 0.0
        return mean_bce(logits[labelled], target[labelled])

    def soft_dice(logits, target):
        prob = torch.sigmoid(logits)
        if bool((target < 0).any()):  # unlabelled pixels (ignore_label) count for nothing
            labelled = (target >= 0).to(prob.dtype)
            prob, target = prob * labelled, target * labelled
        inter = (prob * target).sum()
        return 1 - (2 * inter + 1) / (prob.sum() + target.sum() + 1)

    if kind == "bce":
        return bce
    if kind == "dice":
        return soft_dice
    return lambda logits, target: bce(logits, target) + soft_dice(logits, target)


def multiclass_loss(kind: str) -> Loss:
    """Cross-entropy and/or soft Dice averaged over the classes; label -1 is ignored.

    Parameters
    ----------
    kind : {"ce", "dice", "ce+dice"}

    Returns
    -------
    callable
        ``loss(logits (N, C, H, W), target (N, H, W) int64) -> scalar tensor``.

    Examples
    --------
    >>> loss = multiclass_loss("ce+dice")
    >>> float(loss(torch.zeros(2, 3, 8, 8), torch.full((2, 8, 8), -1)))  # nothing labelled
    0.0
    >>> round(float(multiclass_loss("ce")(torch.zeros(1, 3, 1, 1), torch.zeros(1, 1, 1).long())), 4)
    1.0986
    """
    mean_cross_entropy = torch.nn.CrossEntropyLoss(ignore_index=-1)

    def cross_entropy(logits, target):
        if not bool((target >= 0).any()):
            return logits.sum() * 0.0  # nothing labelled in this batch (the mean would be NaN)
        return mean_cross_entropy(logits, target)

    def soft_dice(logits, target):
        labelled = (target >= 0).unsqueeze(1)
        prob = torch.softmax(logits, dim=1) * labelled
        one_hot = torch.nn.functional.one_hot(target.clamp(min=0), logits.shape[1])
        one_hot = one_hot.permute(0, 3, 1, 2).to(prob.dtype) * labelled
        inter = (prob * one_hot).sum(dim=(0, 2, 3))
        sums = prob.sum(dim=(0, 2, 3)) + one_hot.sum(dim=(0, 2, 3))
        return (1 - (2 * inter + 1) / (sums + 1)).mean()

    if kind == "ce":
        return cross_entropy
    if kind == "dice":
        return soft_dice
    return lambda logits, target: cross_entropy(logits, target) + soft_dice(logits, target)
