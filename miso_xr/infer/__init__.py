"""Inference at scale: global-lattice windows, lazy seamless maps, one model per worker.

Modules: :mod:`.windows` (lattice, halo, blending; numpy only), :mod:`.predict` (``predict``,
``check_cube``), :mod:`.workers` (model references and the per-process cache), :mod:`.uncertainty`
(``suggest_samples``). Import them directly; this package imports nothing heavy.
"""

from __future__ import annotations

# ``miso_xr.infer.predict`` is the module; the function is ``miso_xr.infer.predict.predict``
__all__ = ["check_cube", "suggest_samples"]


def __getattr__(name: str):
    # lazy (PEP 562): importing miso_xr.infer must not import dask, torch or distributed
    if name == "check_cube":
        from .predict import check_cube

        return check_cube
    if name == "suggest_samples":
        from .uncertainty import suggest_samples

        return suggest_samples
    raise AttributeError(f"module 'miso_xr.infer' has no attribute {name!r}")
