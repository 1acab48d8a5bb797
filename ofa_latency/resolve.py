"""One place that turns what a user names as "a predictor" into a fitted predictor.

Accepted, in this order:

* a fitted :class:`~ofa_latency.predictors.LatencyPredictor` (returned as it is);
* a predictor folder (``config.json``; written by ``train``, ``finetune`` or ``save``);
* a hardware-conditioned folder, resolved for the target device given as ``hardware``;
* a folder of OFA lookup-table files (``<R>_lookup_table.yaml``: OFA's own, or ``build-lut``'s),
  read as the raw ``lut`` predictor, with the device-seconds its ``build.json`` records;
* the name of a shipped predictor (``ofa-latency list``).

Every command (``predict``, ``evaluate``, ``compare``, ``finetune``, ``search``, ``sample``)
and :meth:`ofa_latency.LatencyEstimator.load` go through :func:`resolve_predictor`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from .errors import UsageError

__all__ = ["PredictorSource", "locate_predictor", "resolve_predictor"]


@dataclasses.dataclass(frozen=True)
class PredictorSource:
    """Where a named predictor is: ``kind`` is ``"folder"``, ``"conditioned"``, ``"lut"`` or
    ``"shipped"`` (a shipped one is a checked folder too); ``label`` names it for reports."""

    kind: str
    path: Path
    label: str


def locate_predictor(name_or_dir) -> PredictorSource:
    """What ``name_or_dir`` names (see the module docstring), without loading it; errors say
    what was expected."""
    from .conditioned import is_conditioned
    from .lut import LUT_FILE
    from .pretrained import list_pretrained, pretrained_path

    text = str(name_or_dir)
    path = Path(text)
    if path.is_dir():
        if (path / "config.json").is_file():
            return PredictorSource("conditioned" if is_conditioned(path) else "folder", path,
                                   path.name)
        if any(path.glob(LUT_FILE.format(r="*"))):
            return PredictorSource("lut", path, path.name)
        raise UsageError(f"{path} is a folder but neither a predictor (no config.json) nor a "
                         f"lookup table (no *_lookup_table.yaml)")
    if text in {e["name"] for e in list_pretrained()}:
        return PredictorSource("shipped", pretrained_path(text), text)
    if path.exists():
        raise UsageError(f"{text} is a file; expected a predictor folder (with config.json), "
                         f"a lookup-table folder or a shipped predictor's name")
    if os.sep in text or "/" in text or text.startswith("."):
        raise UsageError(f"predictor folder not found: {text}")
    raise UsageError(f"no shipped predictor called {text!r} and no folder of that name; "
                     f"'ofa-latency list' shows the shipped predictors")


def _raw_lut(path: Path):
    from .lut import BUILD_INFO
    from .predictors import create_predictor

    pred = create_predictor("lut", lut_dir=str(path)).fit()
    info = json.loads((path / BUILD_INFO).read_text()) if (path / BUILD_INFO).is_file() else {}
    hw = path / "hardware.json"
    pred.config_ = {"kind": "lut", "metadata": {
        "device_seconds": info.get("device_seconds"), "setting": info.get("setting"),
        "hardware": json.loads(hw.read_text()) if hw.is_file() else None,
        "data": {"path": str(path)}}}
    return pred


def resolve_predictor(spec, hardware=None, batch_size: int | None = None):
    """The fitted predictor ``spec`` names.

    Parameters
    ----------
    spec : LatencyPredictor, str or Path
        See the module docstring.
    hardware : optional
        For a hardware-conditioned folder (required there, refused elsewhere): what
        :func:`~ofa_latency.conditioned.read_hardware` reads (a descriptor JSON, a measurement
        table of the device, a GPU key or name, or a descriptor).
    batch_size : int, optional
        With a GPU name as ``hardware``: the batch size.

    Returns
    -------
    LatencyPredictor
    """
    from .predictors import LatencyPredictor, load_predictor

    if isinstance(spec, LatencyPredictor):
        if hardware is not None:
            raise UsageError("a hardware descriptor is only for hardware-conditioned "
                             "predictors")
        return spec
    src = locate_predictor(spec)
    if src.kind == "conditioned":
        from .conditioned import ConditionedPredictor, read_hardware

        if hardware is None:
            raise UsageError(f"{src.path} is a hardware-conditioned predictor: give the target "
                             f"device's descriptor (--hardware: a descriptor JSON, a "
                             f"measurement table of the device, or a GPU name)")
        return ConditionedPredictor.load(src.path).resolve(read_hardware(hardware, batch_size))
    if hardware is not None:
        raise UsageError(f"{src.label} is a predictor of one device setting; a hardware "
                         f"descriptor is only for hardware-conditioned predictors")
    if src.kind == "lut":
        return _raw_lut(src.path)
    return load_predictor(src.path)
