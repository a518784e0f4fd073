"""Segment a scan with a trained model and print the per-chunk table.

python examples/segment_scan.py scan.zarr model.pt [--truth scan.zarr/labels] [--tile 128]
"""

from __future__ import annotations

import argparse

import volseg


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan")
    parser.add_argument("model")
    parser.add_argument("--out", default=None)
    parser.add_argument("--truth", default=None)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    result = volseg.segment(
        args.scan,
        model=args.model,
        out=args.out,
        truth=args.truth,
        tile=args.tile,
        device=args.device,
        overwrite=True,
    )
    print(result.stats[["chunk_z", "chunk_y", "chunk_x", "ni_fraction", "uncertain_fraction"]])
    print({k: v for k, v in result.summary.items() if k in ("ni_iou", "ni_fraction", "seconds")})
    return result.summary


if __name__ == "__main__":
    main()
