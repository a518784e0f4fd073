"""Microstructure of segmented phases, measured chunk by chunk with dask.

:func:`measure` takes a mask (the ``mask`` array of a volseg output group, any
label volume, a zarr, dask or numpy array, or a path that
:func:`volseg.io.open_scan` opens) and returns a JSON-serialisable dict with

* the **volume fraction** of the phase;
* the **surface area** by a voxel-face count, and the specific surface area
  with and without the isotropic 2/3 correction;
* **connectivity**: connected components, the share of the phase in the largest
  one, and percolation between opposite faces of the volume along each axis;
* a **thickness** (particle size) proxy from the Euclidean distance transform.

:func:`measure_phases` does the same for every phase of a three-phase label
volume (pore, YSZ, Ni) in one pass over the data and adds the **triple-phase
boundary** (TPB) length by an edge count.

No step loads the whole volume: every dask task sees one chunk (plus a halo for
the distance transform or the TPB edges, or two facing boundary planes for the
merge of component labels across chunks). The numbers do not depend on the
chunking: integers are identical, floats agree to rounding. The numpy kernels
(:func:`face_counts`, :func:`tpb_edge_counts`, :func:`local_thickness`,
:func:`merge_labels`, :func:`histogram_median`) are public so that each piece can
be checked against a whole-array computation.

One module per job; each imports only the ones above it in this list:

* ``kernels``: the numpy kernels; ``options``: validated labels, phases, connectivity;
  ``inputs``: opening masks and label volumes (voxel size, phases);
  ``blockwise``: dask plumbing for per-chunk tasks;
* ``components``: chunk-wise labelling and the union-find merge across chunk faces;
* ``tasks``: the per-chunk tasks of one phase (faces, components, thickness, TPB edges);
* ``min_size``, ``cleanup``: removal of small components;
  ``tpb``: active triple-phase boundary;
  ``diffusion``, ``memory_solve``, ``chunked_solve``, ``transport``: tortuosity;
* ``one_phase`` (:func:`measure`), ``three_phases`` (:func:`measure_phases`);
* ``errors``, ``uncertainty``, ``summary``: error bars from decision variants;
  ``rev``: representative volume.

Names are imported on first use (PEP 562), so importing one light submodule does
not load the others.

>>> import numpy as np
>>> import volseg.microstructure as ms
>>> ms.face_counts(np.ones((2, 2, 2), dtype=bool))
(0, 0, 0)
"""

from __future__ import annotations

from volseg._lazy import attach

# public name -> the submodule that defines it (a submodule maps to itself)
_LAZY: dict[str, str] = {
    "OBJECT_META": "blockwise",
    "blockwise": "blockwise",
    "one_block": "blockwise",
    "per_chunk": "blockwise",
    "BLOCK_BYTES_PER_VOXEL": "chunked_solve",
    "STATE_BYTES_PER_VOXEL": "chunked_solve",
    "chunked_solve": "chunked_solve",
    "processing_block": "chunked_solve",
    "tortuosity_chunked": "chunked_solve",
    "clean_output": "cleanup",
    "cleanup": "cleanup",
    "remove_small_components": "cleanup",
    "component_measures": "components",
    "components": "components",
    "connectivity_graph": "components",
    "face_totals": "components",
    "merge_chunk_labels": "components",
    "share": "components",
    "structure": "components",
    "NOT_PERCOLATING": "diffusion",
    "along_axis": "diffusion",
    "apply_operator": "diffusion",
    "axis_result": "diffusion",
    "diffusion": "diffusion",
    "diffusion_operator": "diffusion",
    "dot": "diffusion",
    "dots": "diffusion",
    "face_conductances": "diffusion",
    "face_weights": "diffusion",
    "harmonic": "diffusion",
    "interior": "diffusion",
    "jacobi": "diffusion",
    "solve_record": "diffusion",
    "Unbounded": "errors",
    "error_bars": "errors",
    "errors": "errors",
    "undefined_errors": "errors",
    "as_phase": "inputs",
    "as_volume": "inputs",
    "inputs": "inputs",
    "phases_of": "inputs",
    "refuse_absent_label": "inputs",
    "voxel_size_of": "inputs",
    "ALL_THREE_PHASES": "kernels",
    "AXES": "kernels",
    "ISOTROPIC_EDGE_FACTOR": "kernels",
    "ISOTROPIC_FACE_FACTOR": "kernels",
    "THICKNESS_BINS_PER_VOXEL": "kernels",
    "face_counts": "kernels",
    "histogram_median": "kernels",
    "kernels": "kernels",
    "local_thickness": "kernels",
    "merge_labels": "kernels",
    "phase_bits": "kernels",
    "thickness_bin_width": "kernels",
    "tpb_edge_counts": "kernels",
    "triple_edges": "kernels",
    "memory_solve": "memory_solve",
    "tortuosity_in_memory": "memory_solve",
    "check_min_size": "min_size",
    "min_size": "min_size",
    "parse_min_size": "min_size",
    "cleanup_record": "one_phase",
    "measure": "one_phase",
    "one_phase": "one_phase",
    "settings_record": "one_phase",
    "CONNECTIVITIES": "options",
    "options": "options",
    "validate_label": "options",
    "validate_options": "options",
    "validate_phase_values": "options",
    "validate_phases": "options",
    "DEFAULT_SHARES": "rev",
    "rev": "rev",
    "rev_curve": "rev",
    "format_row": "summary",
    "summary": "summary",
    "summary_rows": "summary",
    "phase_measures": "tasks",
    "phase_tasks": "tasks",
    "tasks": "tasks",
    "tpb_block": "tasks",
    "tpb_chunk_counts": "tasks",
    "tpb_measures": "tasks",
    "tpb_task": "tasks",
    "volume_measures": "tasks",
    "measure_phases": "three_phases",
    "three_phases": "three_phases",
    "DEFAULT_FACES": "tpb",
    "active_tpb": "tpb",
    "parse_faces": "tpb",
    "tpb": "tpb",
    "DEFAULT_MEMORY_BUDGET": "transport",
    "IN_MEMORY_BYTES_PER_VOXEL": "transport",
    "parse_memory": "transport",
    "phase_transport": "transport",
    "tortuosity": "transport",
    "transport": "transport",
    "decision_variants": "uncertainty",
    "measure_with_errors": "uncertainty",
    "uncertainty": "uncertainty",
}

__getattr__, __dir__, __all__ = attach(__name__, _LAZY)
