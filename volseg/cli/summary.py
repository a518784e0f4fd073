"""How the ``volseg`` commands print a run's summary (segment, stats, evaluate).

>>> print_summary({"ni_iou": 0.91234, "chunks": 4})
  ni_iou  0.9123
  chunks  4
"""

from __future__ import annotations

__all__ = ["print_summary"]


def print_summary(summary: dict) -> None:
    """Print the summary of a segmentation or an evaluation as aligned ``key  value`` rows.

    Parameters
    ----------
    summary : dict
        ``SegmentationResult.summary`` or ``Evaluation.summary``: floats are shown
        with four decimals; the threshold baseline, per-phase IoUs and fractions
        get a row each.

    Examples
    --------
    >>> print_summary({"ni_iou": 0.8, "two_class_mean_iou": 0.85,
    ...                "phase_fractions": {"ni": 0.27}})
      ni_iou              0.8000
      two_class_mean_iou  0.8500  (mean of Ni and background)
      fraction ni         0.2700
    """
    order = [
        "ni_iou",
        "ni_dice",
        "precision",
        "recall",
        "two_class_mean_iou",
        "ni_fraction",
        "uncertain_fraction",
        "voxels",
        "chunks",
        "chunks_computed",
        "chunks_skipped",
        "chunks_refined",
        "chunks_missing",
        "seconds",
        "voxels_per_second",
        "status",
    ]
    rows = []
    for key in order:
        if key in summary and summary[key] is not None:
            value = summary[key]
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            if key == "two_class_mean_iou":
                text += "  (mean of Ni and background)"
            rows.append((key, text))
    baseline = summary.get("baseline")
    if isinstance(baseline, dict) and baseline.get("ni_iou") is not None:
        rows.append(
            (
                f"{baseline['method']} Ni IoU",
                f"{baseline['ni_iou']:.4f}  (threshold {baseline['threshold']:.1f})",
            )
        )
    for name, value in (summary.get("phase_iou") or {}).items():
        rows.append((f"iou {name}", f"{value:.4f}" if value is not None else "n/a"))
    if summary.get("mean_iou") is not None:
        rows.append(("mean_iou (phases)", f"{summary['mean_iou']:.4f}"))
    for name, value in (summary.get("phase_fractions") or {}).items():
        rows.append((f"fraction {name}", f"{value:.4f}"))
    width = max((len(key) for key, _ in rows), default=0)
    for key, text in rows:
        print(f"  {key:<{width}}  {text}")
