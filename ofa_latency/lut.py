"""OFA's per-layer latency lookup tables (LUTs): read them offline, turn them into the additive
table every predictor compiles to, and build them on any device.

A LUT folder holds one ``<R>_lookup_table.yaml`` per input resolution; each key names one layer
configuration, e.g. ``expanded_conv-input:56x56x32-output:56x56x32-expand:96-kernel:3-stride:1-
idskip:1-se:0-hs:0``, and maps to ``{count, mean, std}`` (milliseconds). OFA's code
(``ofa.tutorial.latency_table``) sums the means of a subnet's layers: the stem convolution, the
first block, every active elastic block, the final expand convolution, the global average pool,
the feature-mix convolution and the classifier. A block's key depends only on the resolution,
its position and its (kernel, expand) choice, so a LUT *is* an additive table:
:func:`ofa_latency.predictors.lut.lut_table` reads it into one, and the ``lut`` predictor kind
(:mod:`ofa_latency.predictors.lut`) answers exactly as OFA's code does, at the same speed as
any predictor.

:func:`build_lut` measures every distinct layer of chosen resolutions in isolation on a
profiling backend (the profiler's drift-corrected protocol, resumable) and writes YAML files
that OFA's own classes read unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from pathlib import Path

from .errors import UsageError

logger = logging.getLogger(__name__)

__all__ = ["load_ofa_lut", "read_lut_dir", "write_lut_dir", "layer_plan",
           "build_lut", "measure_layers", "finish_lut", "export_layers", "LayerSpec", "LUT_FILE"]

LUT_FILE = "{r}_lookup_table.yaml"
_FILE_RE = re.compile(r"(\d+)_lookup_table\.yaml$")
BUILD_LOG = "layers.csv"
BUILD_INFO = "build.json"


def _lut_files(lut_dir) -> dict:
    lut_dir = Path(lut_dir)
    if not lut_dir.is_dir():
        raise FileNotFoundError(f"lookup-table folder not found: {lut_dir}")
    found = {int(m.group(1)): p for p in lut_dir.glob("*_lookup_table.yaml")
             if (m := _FILE_RE.match(p.name))}
    if not found:
        raise FileNotFoundError(f"no <R>_lookup_table.yaml files in {lut_dir}")
    return found


def read_lut_dir(lut_dir, resolutions=None) -> dict:
    """``{resolution: {key: {"count", "mean", "std"}}}`` from a LUT folder (``yaml.safe_load``)."""
    import yaml

    found = _lut_files(lut_dir)
    wanted = sorted(found) if resolutions is None else list(resolutions)
    missing = [r for r in wanted if r not in found]
    if missing:
        raise FileNotFoundError(f"{lut_dir} has no tables for resolutions {missing}; "
                                f"found {sorted(found)}")
    out = {}
    for r in wanted:
        with open(found[r]) as fh:
            d = yaml.safe_load(fh)
        if not isinstance(d, dict):
            raise ValueError(f"{found[r]} is not a lookup table (a mapping of layer keys)")
        out[r] = d
    return out


def write_lut_dir(lut_dir, tables: dict) -> Path:
    """Write ``{resolution: {key: {"count", "mean", "std"}}}`` as OFA's YAML files."""
    import yaml

    d = Path(lut_dir)
    d.mkdir(parents=True, exist_ok=True)
    for r, t in tables.items():
        (d / LUT_FILE.format(r=r)).write_text(yaml.safe_dump(
            {k: {"count": int(v["count"]), "mean": float(v["mean"]), "std": float(v["std"])}
             for k, v in sorted(t.items())}, default_flow_style=False))
    return d


def load_ofa_lut(lut_dir, resolutions=None):
    """OFA's own ``ofa.tutorial`` ``LatencyTable`` over a local LUT folder.

    OFA's loader downloads the tables and calls ``yaml.load`` without a Loader (which fails on
    PyYAML >= 6); this builds the same objects from a local folder with ``yaml.safe_load``.
    Query with ``table.predict_efficiency({'ks', 'e', 'd', 'r': [R]})`` (ms, sum over layers).
    """
    from ofa.tutorial.latency_table import LatencyEstimator, LatencyTable

    tables = read_lut_dir(lut_dir, resolutions)
    table = LatencyTable.__new__(LatencyTable)
    table.latency_tables = {}
    for r, lut in tables.items():
        est = LatencyEstimator.__new__(LatencyEstimator)
        est.lut = lut
        table.latency_tables[r] = est
    logger.info("loaded %d lookup tables from %s", len(tables), lut_dir)
    return table


# ---------------------------------------------------------------------------- layer keys
@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer configuration of a LUT: its key, which module it is and its input shape."""

    key: str
    part: str                 # see ofa_latency.spaces.building.layer_module
    input_shape: tuple        # (C, H, W) or (C,)
    block: int | None = None  # elastic block index (part == "block")
    ks: int | None = None
    e: int | None = None


def _shape(s) -> str:
    return "x".join(str(v) for v in s)


def _key(kind, inp, out, **kw) -> str:
    parts = [kind, f"input:{_shape(inp)}", f"output:{_shape(out)}"]
    if kind == "expanded_conv":
        parts += [f"expand:{kw['mid']}", f"kernel:{kw['ks']}", f"stride:{kw['stride']}",
                  f"idskip:{kw['idskip']}", f"se:{kw['se']}", f"hs:{kw['hs']}"]
    return "-".join(parts)


@dataclasses.dataclass
class LutPlan:
    """Per resolution: the fixed layers' keys and every (block, choice)'s key."""

    space: object
    fixed: dict    # r -> [LayerSpec]
    blocks: dict   # r -> list (n_blocks) of list (n_choices) of LayerSpec

    def layers(self) -> list:
        """Every distinct layer, in a stable order."""
        seen = {}
        for r in sorted(self.fixed):
            for spec in self.fixed[r] + [s for row in self.blocks[r] for s in row]:
                seen.setdefault(spec.key, spec)
        return list(seen.values())


def layer_plan(space, resolutions) -> LutPlan:
    """The LUT keys of ``space`` (OFA MobileNetV3) at ``resolutions``, exactly as OFA's
    ``ofa.tutorial.latency_table`` forms them."""
    from .spaces.netconfig import layer_shapes_of

    if not space.name.startswith("ofa_mbv3"):
        raise UsageError(f"lookup tables are built for OFA MobileNetV3 spaces; {space.name} "
                         f"uses another layer set")
    shapes = layer_shapes_of(space)
    stem, head = shapes["stem"], shapes["head"]
    fixed, blocks = {}, {}
    for r in resolutions:
        if r not in space.image_sizes:
            raise UsageError(f"resolution {r} is not one of {space.name}'s "
                             f"({space.image_sizes[0]}..{space.image_sizes[-1]})")
        f = (r + 1) // 2
        c0 = stem["conv_out"]
        fx = [LayerSpec(_key("Conv", [r, r, 3], [f, f, c0]), "first_conv", (3, r, r)),
              LayerSpec(_key("expanded_conv", [f, f, c0], [f, f, stem["block_out"]],
                             mid=stem["block_mid"], ks=stem["block_kernel"], stride=1, idskip=1,
                             se=int(bool(stem["block_se"])), hs=0), "first_block", (c0, f, f))]
        rows = []
        size = f
        for b, info in enumerate(shapes["blocks"]):
            first = space.pos_in_stage[b] == 0
            stride = info["stride"] if first else 1
            out = int((size - 1) / stride + 1)
            row = []
            for k in space.ks_choices:
                for ex in space.e_choices:
                    i, m, o, se = info["choices"][(k, ex)]
                    row.append(LayerSpec(
                        _key("expanded_conv", [size, size, i], [out, out, o], mid=m, ks=k,
                             stride=stride, idskip=0 if first else 1, se=int(se > 0),
                             hs=int(info["act"] == "h_swish")),
                        "block", (i, size, size), block=b, ks=k, e=ex))
            rows.append(row)
            size = out
        last, fe, fm = head["last_ch"], head["final_expand"], head["feature_mix"]
        fx += [LayerSpec(_key("Conv_1", [size, size, last], [size, size, fe]), "final_expand",
                         (last, size, size)),
               LayerSpec(_key("AvgPool2D", [size, size, fe], [1, 1, fe]), "pool", (fe, size, size)),
               LayerSpec(_key("Conv_2", [1, 1, fe], [1, 1, fm]), "feature_mix", (fe, 1, 1)),
               LayerSpec(_key("Logits", [1, 1, fm], [head["classifier_out"]]), "classifier",
                         (fm, 1, 1))]
        fixed[r], blocks[r] = fx, rows
    return LutPlan(space, fixed, blocks)


# ---------------------------------------------------------------------------- building
LAYER_LOG_HEADER = "key,ratio,ref_min_ms,latency_raw_ms,spread_pct,n_runs\n"
"""The header of a build's ``layers.csv`` (one row per layer: :func:`layer_row`)."""


def layer_row(key: str, res) -> str:
    """The ``layers.csv`` line of one layer's combined measurement ``res``."""
    return (f'"{key}",{res.ratio!r},{res.ref_min_ms!r},{res.latency_raw_ms!r},'
            f'{res.spread_pct!r},{res.n_runs}\n')


def lut_setting(space, backend, batch_size: int) -> dict:
    """What a lookup table is measured for (``build.json``'s ``setting``)."""
    return {"space": space.name, "backend": backend.name, "device": backend.device_name(),
            "device_type": backend.device, "threads": backend.threads,
            "precision": backend.precision, "batch_size": batch_size}


def _read_layer_log(log_path: Path) -> list[dict]:
    import csv

    if not log_path.exists():
        return []
    with open(log_path, newline="") as fh:
        return list(csv.DictReader(fh))


def open_build(out_dir, setting: dict):
    """Start or resume a lookup-table build in ``out_dir`` for ``setting``: returns its
    ``build.json`` record (written), the paths of ``build.json`` and ``layers.csv``, and the
    keys of the layers already measured; another setting's build there is refused."""
    from .datasets import utc_timestamp

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info_path, log_path = out / BUILD_INFO, out / BUILD_LOG
    info = json.loads(info_path.read_text()) if info_path.exists() else {
        "setting": setting, "device_seconds": 0.0, "started": utc_timestamp()}
    if info["setting"] != setting:
        raise UsageError(f"{out} holds a lookup table being built for {info['setting']}, not "
                         f"{setting}; use another --out")
    info_path.write_text(json.dumps(info, indent=1))
    return info, info_path, log_path, {r["key"] for r in _read_layer_log(log_path)}


def measure_layers(layers, prepare, prepare_reference, out_dir, setting: dict, protocol=None,
                   progress: bool = True) -> dict:
    """Time ``layers`` (objects with a ``key``) not yet in ``out_dir/layers.csv``, each with a
    runner from ``prepare(layer)``, against the reference subnet's runner from
    ``prepare_reference()`` (called only when there is something to time; the profiler's
    protocol), appending one row per layer; ``out_dir/build.json`` keeps ``setting``, the
    device-seconds (summed over resumed runs) and when the last layer was measured. numpy
    only: the board profiler uses it too."""
    from .datasets import utc_timestamp
    from .profiling.timing import TimingProtocol, combine_windows, measure_windows

    protocol = protocol or TimingProtocol()
    out = Path(out_dir)
    info, info_path, log_path, done = open_build(out, setting)
    todo = [lay for lay in layers if lay.key not in done]
    logger.info("%s: %d of %d layers measured, %d to go", out, len(layers) - len(todo),
                len(layers), len(todo))
    bar = None
    if progress and todo:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(layers), initial=len(layers) - len(todo), unit="layer",
                       desc=f"LUT {setting.get('backend')} t{setting.get('threads')} "
                            f"b{setting.get('batch_size')}")
        except ImportError:  # the board may not have tqdm: progress through logging
            pass
    new = not log_path.exists()
    t_start = time.perf_counter()
    ref_runner = prepare_reference() if todo else None
    with open(log_path, "a") as fh:
        if new:
            fh.write(LAYER_LOG_HEADER)
        for k, lay in enumerate(todo, start=1):
            t0 = time.perf_counter()
            res = combine_windows(measure_windows(lambda: prepare(lay), ref_runner, protocol))
            fh.write(layer_row(lay.key, res))
            fh.flush()
            info["device_seconds"] += time.perf_counter() - t0
            info_path.write_text(json.dumps(info, indent=1))
            if bar is not None:
                bar.update(1)
            elif progress and (k % max(1, len(todo) // 20) == 0 or k == len(todo)):
                rate = (time.perf_counter() - t_start) / k
                logger.info("%d/%d layers, %.2f s each, about %.0f min left", k, len(todo),
                            rate, rate * (len(todo) - k) / 60)
    if bar is not None:
        bar.close()
    info["device_seconds"] = round(info["device_seconds"], 1)
    info["n_layers"] = len(done) + len(todo)
    if todo:
        info["finished"] = utc_timestamp()
    info_path.write_text(json.dumps(info, indent=1))
    return info


def finish_lut(space, out_dir, resolutions=None) -> dict:
    """Write the ``<R>_lookup_table.yaml`` files of ``out_dir`` from its ``layers.csv``
    (milliseconds at the reference level of all its windows); every layer of ``resolutions``
    (default: those ``build.json`` records, e.g. from the board) must be measured. Returns the
    updated ``build.json`` record."""
    from .profiling.scale import reference_level_ms

    out = Path(out_dir)
    if resolutions is None:
        rec = json.loads((out / BUILD_INFO).read_text()) if (out / BUILD_INFO).exists() else {}
        resolutions = rec.get("resolutions")
        if not resolutions:
            raise UsageError(f"{out / BUILD_INFO} records no resolutions; give them")
    plan = layer_plan(space, sorted(set(int(r) for r in resolutions)))
    rows = {r["key"]: r for r in _read_layer_log(out / BUILD_LOG)}
    missing = [s.key for s in plan.layers() if s.key not in rows]
    if missing:
        raise UsageError(f"{out}: {len(missing)} of {len(plan.layers())} layers are not measured "
                         f"yet (e.g. {missing[0]!r}); resume the build")
    level = reference_level_ms([float(r["ref_min_ms"]) for r in rows.values()])
    tables = {}
    for r in sorted(plan.fixed):
        t = {}
        for spec in plan.fixed[r] + [x for row in plan.blocks[r] for x in row]:
            m = rows[spec.key]
            mean = float(m["ratio"]) * level
            t[spec.key] = {"count": int(m["n_runs"]), "mean": mean,
                           "std": mean * float(m["spread_pct"]) / 100 / 2}  # half the spread
        tables[r] = t
    write_lut_dir(out, tables)
    info_path = out / BUILD_INFO
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info.update(resolutions=sorted(plan.fixed), reference_level_ms=level)
    info_path.write_text(json.dumps(info, indent=1))
    return info


def build_lut(space, backend, resolutions, out_dir, batch_size: int = 1, protocol=None,
              progress: bool = True) -> dict:
    """Measure every distinct layer of ``space`` at ``resolutions`` in isolation on
    ``backend`` and write OFA-format YAML files into ``out_dir``.

    Each layer is timed with the profiler's protocol against the reference subnet (its
    ``ratio``), in milliseconds at the reference level of all the build's windows, like a
    measurement table. Measurements are appended to ``out_dir/layers.csv`` as they are made,
    so a killed build resumes where it stopped; ``out_dir/build.json`` records the setting and
    the device-seconds spent (summed over resumed runs).

    Returns
    -------
    dict
        The build record (``n_layers``, ``device_seconds``, ``resolutions``, the setting).
    """
    from .profiling import reference_subnet
    from .spaces.building import layer_module

    resolutions = sorted(set(int(r) for r in resolutions))
    plan = layer_plan(space, resolutions)
    setting = lut_setting(space, backend, batch_size)
    modules = {}

    def prepare(spec):
        k = (spec.part, spec.block, spec.ks, spec.e)
        if k not in modules:
            modules[k] = layer_module(space, spec.part, spec.block, spec.ks, spec.e)
        return backend.prepare_module(modules[k], spec.input_shape, batch_size)

    measure_layers(plan.layers(), prepare,
                   lambda: backend.prepare(space, reference_subnet(space), batch_size),
                   out_dir, setting, protocol, progress)
    return finish_lut(space, out_dir, resolutions)


LAYER_MANIFEST = "manifest.json"


def export_layers(space, resolutions, out_dir, batch_size: int = 1, progress: bool = True) -> Path:
    """Write every distinct layer of ``resolutions`` as a weightless ONNX file (the board fills
    random weights: :mod:`ofa_latency.weightless`), the reference subnet as
    ``reference.onnx`` and a ``manifest.json`` (kind ``layers``: per file the LUT key and the
    input shape), for timing on a device without PyTorch
    (``python -m ofa_latency.board profile-layers``). Resumable."""
    from tqdm.auto import tqdm

    from .export import REFERENCE_FILE, write_structure
    from .profiling import reference_subnet
    from .spaces.building import layer_module, onnx_bytes

    resolutions = sorted(set(int(r) for r in resolutions))
    plan = layer_plan(space, resolutions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref = reference_subnet(space)
    ref_weights = write_structure(out / REFERENCE_FILE, lambda: onnx_bytes(
        space.build(ref), ref.image_size, batch_size))
    entries = []
    for i, spec in enumerate(tqdm(plan.layers(), disable=not progress, unit="layer",
                                  desc="export layers")):
        name = f"layer_{i:05d}.onnx"
        weights = write_structure(out / name, lambda: onnx_bytes(
            layer_module(space, spec.part, spec.block, spec.ks, spec.e), None, batch_size,
            input_shape=spec.input_shape))
        entries.append({"file": name, "key": spec.key, "input_shape": list(spec.input_shape),
                        "weights": weights})
    manifest = {"format_version": 2, "kind": "layers", "space": space.name,
                "batch_size": batch_size, "resolutions": resolutions,
                "reference": {"file": REFERENCE_FILE, "image_size": ref.image_size,
                              "weights": ref_weights},
                "layers": entries}
    path = out / LAYER_MANIFEST
    path.write_text(json.dumps(manifest, indent=1))
    return path
