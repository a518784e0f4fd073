"""Score a segmentation against labels, compare with a threshold and write the HTML report.

python examples/evaluate_and_report.py scan_ni.zarr labels.zarr [--html report.html]
"""

from __future__ import annotations

import argparse

import volseg
from volseg.report import make_report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("truth")
    parser.add_argument("--html", default=None)
    args = parser.parse_args(argv)

    evaluation = volseg.evaluate(args.output, args.truth, baseline="multiotsu")
    summary = evaluation.summary
    print(
        f"Ni IoU {summary['ni_iou']:.4f} (multi-Otsu {summary['baseline']['ni_iou']:.4f}), "
        f"Dice {summary['ni_dice']:.4f}"
    )
    print("worst slices:")
    print(evaluation.slices.sort_values("iou").head(3))
    page = make_report(args.output, truth=args.truth, html=args.html)
    print(f"report: {page}")
    return summary


if __name__ == "__main__":
    main()
