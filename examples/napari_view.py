"""Open a scan and its Ni mask side by side in napari (lazily, with dask).

    python examples/napari_view.py scan.zarr scan_ni.zarr

Needs napari (pip install "napari[all]"). With --check the layers are built and
described without opening a window.
"""

from __future__ import annotations

import argparse

import dask.array as da

from volseg import io as vio


def layers(scan: str, output: str) -> list[tuple[da.Array, dict, str]]:
    """napari layer data tuples: the scan as an image, the mask as labels."""
    image = vio.open_scan(scan).array
    image = image if isinstance(image, da.Array) else da.from_array(image, chunks=image.chunks)
    mask = da.from_zarr(output, component="mask")
    low, high = (float(v) for v in da.percentile(image[image.shape[0] // 2].ravel(), [0.5, 99.5]))
    return [
        (image, {"name": "scan", "contrast_limits": (low, high)}, "image"),
        (mask, {"name": "Ni", "opacity": 0.5}, "labels"),
    ]


def main(argv: list[str] | None = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan")
    parser.add_argument("output")
    parser.add_argument("--check", action="store_true", help="build the layers, open no window")
    args = parser.parse_args(argv)
    built = layers(args.scan, args.output)
    if args.check:
        for data, meta, kind in built:
            print(f"{kind:<7} {meta['name']:<5} shape {data.shape} dtype {data.dtype}")
        return built
    import napari

    viewer = napari.Viewer()
    for data, meta, kind in built:
        getattr(viewer, f"add_{kind}")(data, **meta)
    napari.run()
    return built


if __name__ == "__main__":
    main()
