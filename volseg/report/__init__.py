"""Figures and the HTML report of an output (matplotlib, imported on first use).

:mod:`volseg.report.figures` draws the plots, :mod:`volseg.report.slices` the slice
images with outlines and TP/FP/FN maps, :mod:`volseg.report.tables` the HTML tables,
and :mod:`volseg.report.page` puts them together (:func:`make_report`). Names are
loaded on first use (PEP 562): ``volseg.report.training_curves`` does not load the
page's dependencies.

>>> from volseg import report
>>> report.training_curves.__module__
'volseg.report.figures'
"""

from __future__ import annotations

from volseg._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "COLOURS": "figures",
        "ERROR_COLOURS": "slices",
        "chunk_heatmap": "figures",
        "error_classes": "slices",
        "format_value": "tables",
        "fraction_profiles": "figures",
        "make_report": "page",
        "microstructure_table": "tables",
        "outline": "slices",
        "page_paths": "page",
        "phase_histograms": "figures",
        "pyplot": "figures",
        "rev_figure": "figures",
        "save_figure": "figures",
        "slice_figure": "slices",
        "slices_figure": "slices",
        "summary_table": "tables",
        "training_curves": "figures",
        "worst_chunks_table": "tables",
    },
)
