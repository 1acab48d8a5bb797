"""Hardware-conditioned prediction: one model over several device settings, resolved for a
target device from that device's descriptor.

A :class:`ConditionedPredictor` holds one additive table per training setting (its *members*,
each fitted on that setting's measurements) and each member's :class:`HardwareDescriptor`.
Given the descriptor of a device it has not seen, :meth:`ConditionedPredictor.resolve` returns
an ordinary table predictor for it, in one of three ways, from the most informed to the least:

``references`` (two or more measured subnets in the descriptor)
    the descriptor's measured subnets (HELP measures 10 fixed reference subnets on a new
    device; any measured subnets will do) choose the member whose rescaled table fits them
    best, and cross-validation on them chooses between that rescaled table and the
    non-negative mix of the members' tables (:func:`~ofa_latency.adapt.finetune` with methods
    ``scale`` and ``mix``: the weights of the mix are the conditioning on hardware);
``reference`` (one measured subnet, e.g. a measurement table's reference level)
    the nearest member (by setting, then by spec numbers) rescaled to match it;
``specs`` (no measurement at all)
    the nearest member rescaled by the inverse ratio of a throughput figure (FP32 TFLOP/s for
    GPUs, measured matmul GFLOP/s for CPUs). An exponent fitted on the members' ratios was
    measured and extrapolates badly from the two or three devices available (BENCHMARKS.md);
    this path is the weakest and says so in its report.

Members share a setting *family* when device type, backend, threads and batch size match.
With references, every member of the target's device type is a candidate (the references
decide; a member at another batch size can have the closer shape); without, the nearest
member of the target's family when it has any, else of its device type.
With the handful of training devices public data offer (three GPUs in HELP), a free model over
the descriptor cannot learn how hardware maps to latency; a low-dimensional combination of
measured devices' tables, weighted by what the target's own measurements say, can.

Saved as a folder: ``config.json`` (kind ``conditioned``, the members' descriptors and the
recommended reference subnets) and ``tables.safetensors`` (the members' stacked tables).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
from pathlib import Path

import numpy as np

from ._folders import verify_folder, writing_folder
from ._version import __version__
from .errors import NotFittedError, UsageError
from .predictors import AdditiveTable, LatencyPredictor, create_predictor
from .spaces import Subnet, get_space

logger = logging.getLogger(__name__)

__all__ = ["HardwareDescriptor", "ConditionedPredictor", "CONDITIONED_KIND", "is_conditioned",
           "read_hardware"]

CONDITIONED_KIND = "conditioned"
TABLES_NAME = "tables.safetensors"
_SPEED_FIELDS = ("fp32_tflops", "matmul_gflops")  # higher is faster; first shared one is used
_GPU_SPEC_FIELDS = ("cuda_cores", "sm_count", "memory_gb", "memory_bandwidth_gbs",
                    "boost_clock_mhz", "fp32_tflops")
_CPU_SPEC_FIELDS = ("matmul_gflops", "memory_bandwidth_gbs", "physical_cores", "memory_gb")


def _positive_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


@dataclasses.dataclass
class HardwareDescriptor:
    """What is known about one device setting: its identity, spec numbers and measured
    latencies of a few subnets.

    Parameters
    ----------
    name : str
        A label (GPU or CPU name).
    device_type : str
        ``"cpu"`` or ``"cuda"``.
    batch_size : int
        Images per inference.
    backend, threads : optional
        The runtime setting (``None`` when unknown, e.g. HELP's GPUs).
    specs : dict
        Positive numbers: spec-sheet facts (``fp32_tflops``, ``memory_bandwidth_gbs``, ...) or
        measured micro-benchmarks (``matmul_gflops``, ...).
    reference_ms : dict
        ``Subnet.key()`` -> measured latency (ms) of subnets measured on this device.
    """

    name: str
    device_type: str
    batch_size: int
    backend: str | None = None
    threads: int | None = None
    specs: dict = dataclasses.field(default_factory=dict)
    reference_ms: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.device_type not in ("cpu", "cuda"):
            raise UsageError(f"hardware descriptor {self.name!r}: device_type must be 'cpu' or "
                             f"'cuda', got {self.device_type!r}")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) \
                or self.batch_size < 1:
            raise UsageError(f"hardware descriptor {self.name!r}: batch_size must be a positive "
                             f"integer, got {self.batch_size!r}")
        bad = [k for k, v in self.specs.items() if not _positive_number(v)]
        if bad:
            raise UsageError(f"hardware descriptor {self.name!r}: specs {bad} are not positive "
                             f"numbers")
        bad = [k for k, v in self.reference_ms.items() if not _positive_number(v)]
        if bad:
            raise UsageError(f"hardware descriptor {self.name!r}: {len(bad)} reference "
                             f"latencies are not positive numbers of ms")

    @property
    def family(self) -> tuple:
        """``(device_type, backend, threads, batch_size)``: settings comparable as such."""
        return (self.device_type, self.backend, self.threads, self.batch_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "hardware descriptor") -> "HardwareDescriptor":
        if not isinstance(d, dict):
            raise UsageError(f"{where}: expected a JSON object")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        missing = [k for k in ("name", "device_type", "batch_size") if k not in d]
        if unknown or missing:
            raise UsageError(f"{where}: " + "; ".join(
                ([f"unknown fields {unknown}"] if unknown else [])
                + ([f"missing fields {missing}"] if missing else []))
                + f" (fields: {sorted(fields)})")
        return cls(**d)

    @classmethod
    def from_json(cls, path) -> "HardwareDescriptor":
        """Read a descriptor written by :meth:`save`."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(d, str(path))

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_gpu(cls, key: str, batch_size: int, specs_path=None) -> "HardwareDescriptor":
        """A spec-only descriptor of a GPU of ``data/hardware.csv`` (by its ``key`` or name)."""
        from .hardware import load_gpu_specs

        specs = load_gpu_specs(specs_path)
        row = specs[(specs["key"] == key) | (specs["name"] == key)]
        if row.empty:  # a shorter name of one GPU (e.g. HELP's "NVIDIA Tesla V100")
            row = specs[specs["name"].str.startswith(str(key) + " ")]
            row = row if len(row) == 1 else row.iloc[:0]
        if row.empty:
            raise UsageError(f"GPU {key!r} is not in the spec table; known keys: "
                             f"{', '.join(specs['key'])}")
        r = row.iloc[0]
        return cls(name=str(r["name"]), device_type="cuda", batch_size=int(batch_size),
                   specs={k: float(r[k]) for k in _GPU_SPEC_FIELDS if _positive_number(float(r[k]))})

    @classmethod
    def from_table(cls, df, hardware: dict | None = None, where: str = "table",
                   references=None) -> "HardwareDescriptor":
        """The descriptor of a measurement table's one setting.

        Its specs come from ``hardware`` (the table's ``.hardware.json``: measured matmul and
        memory throughput, cores) or, for a GPU named in ``data/hardware.csv``, its spec sheet.
        Its references are the measured rows (only those whose subnet is in ``references``,
        a list of subnets, when given), plus the profiler's reference subnet at the table's
        reference level when the rows carry one.
        """
        from .datasets import subnets_of
        from .profiling import reference_subnet
        from .datasets import single_setting

        s = single_setting(df, where)
        name = str(hardware.get("gpu_name") or hardware.get("cpu_model")) if hardware \
            else str(s["device"])
        specs = {}
        if s["device_type"] == "cuda":
            try:
                specs = cls.from_gpu(str(s["device"]), 1).specs
            except UsageError:
                logger.info("%s: GPU %r is not in the spec table; no spec numbers", where,
                            s["device"])
        for k in _CPU_SPEC_FIELDS if s["device_type"] == "cpu" else ():
            if hardware and _positive_number(hardware.get(k)):
                specs[k] = float(hardware[k])
        keep = None if references is None else {
            (r if isinstance(r, Subnet) else get_space(s["space"]).validate(r)).key()
            for r in references}
        ref = {}
        for sub, ms in zip(subnets_of(df), df["latency_ms"].to_numpy()):
            if keep is None or sub.key() in keep:
                ref.setdefault(sub.key(), []).append(float(ms))
        ref = {k: float(np.median(v)) for k, v in ref.items()}
        if any(c in df.columns and df[c].notna().any() for c in ("ref_min_ms", "ref_latency_ms")):
            from .profiling.scale import table_level_ms

            level, _ = table_level_ms(df)
            if _positive_number(level):
                ref[reference_subnet(get_space(s["space"])).key()] = float(level)
        threads = s.get("threads")
        return cls(name=name, device_type=str(s["device_type"]), batch_size=int(s["batch_size"]),
                   backend=None if s["backend"] == "help" else str(s["backend"]),
                   threads=None if threads is None or threads != threads else int(threads),
                   specs=specs, reference_ms=ref)


def _table_predictor(table: AdditiveTable, n_train=None) -> LatencyPredictor:
    return create_predictor("table", space=table.space.name).set_table(table, n_train=n_train)


class ConditionedPredictor:
    """One latency model over several device settings, conditioned on a hardware descriptor.

    Parameters
    ----------
    space : str
        Search space name.
    member_kind : str
        Predictor kind fitted on each setting (``xgb``, ``mlp``, ``table``).
    member_params : dict, optional
        Its hyper-parameters.
    """

    kind = CONDITIONED_KIND

    def __init__(self, space: str = "ofa_mbv3_w1.2", member_kind: str = "xgb",
                 member_params: dict | None = None):
        self.space = space
        self.member_kind = member_kind
        self.member_params = dict(member_params or {})

    def __repr__(self):
        n = len(getattr(self, "tables_", []))
        return (f"ConditionedPredictor(space={self.space!r}, member_kind={self.member_kind!r}, "
                f"members={n})")

    @property
    def space_(self):
        return get_space(self.space)

    def _check_fitted(self):
        if not getattr(self, "tables_", None):
            raise NotFittedError("this ConditionedPredictor is not fitted yet; call fit(), "
                                 "from_members() or load() first")

    # ---------------------------------------------------------------- fitting
    def fit(self, tables, descriptors, references=(), progress: bool = False
            ) -> "ConditionedPredictor":
        """Fit one member of ``member_kind`` per table (each table one setting: arch dicts,
        Subnets or a measurement table with ``latency_ms``, as :meth:`LatencyPredictor.fit`
        takes them), with the matching descriptors; ``references`` are the subnets a new
        device should measure for its descriptor (recorded in the config)."""
        tables, descriptors = list(tables), list(descriptors)
        if len(tables) != len(descriptors) or not tables:
            raise UsageError(f"need one descriptor per table and at least one table, got "
                             f"{len(tables)} tables and {len(descriptors)} descriptors")
        members = []
        for t, d in zip(tables, descriptors):
            logger.info("conditioned: fitting a %s member for %s (batch %d)", self.member_kind,
                        d.name, d.batch_size)
            members.append(create_predictor(self.member_kind, space=self.space,
                                            **self.member_params).fit(t, progress=progress))
        return self._set_members(members, descriptors, references)

    @classmethod
    def from_members(cls, predictors, descriptors, references=()) -> "ConditionedPredictor":
        """Assemble from fitted predictors (one per setting) and their descriptors."""
        predictors = list(predictors)
        if not predictors:
            raise UsageError("need at least one member predictor")
        for p in predictors:
            if not isinstance(p, LatencyPredictor):
                raise UsageError(f"members must be fitted LatencyPredictors, got "
                                 f"{type(p).__name__}")
        kinds = sorted({p.kind for p in predictors})
        self = cls(space=predictors[0].space,
                   member_kind=kinds[0] if len(kinds) == 1 else "+".join(kinds))
        return self._set_members(predictors, descriptors, references)

    def _set_members(self, predictors, descriptors, references):
        descriptors = list(descriptors)
        if len(descriptors) != len(predictors):
            raise UsageError(f"{len(predictors)} members but {len(descriptors)} descriptors")
        for p in predictors:
            if p.space != self.space:
                raise UsageError(f"member of space {p.space!r} in a model of {self.space!r}")
        sp = self.space_
        self.tables_ = [p.table for p in predictors]
        self.descriptors_ = [d if isinstance(d, HardwareDescriptor)
                             else HardwareDescriptor.from_dict(d) for d in descriptors]
        self.references_ = [(r if isinstance(r, Subnet) else sp.validate(r)) for r in references]
        return self

    # ---------------------------------------------------------------- resolving
    def _candidates(self, hw: HardwareDescriptor, pool: str = "family") -> list[int]:
        same_type = [i for i, d in enumerate(self.descriptors_) if d.device_type == hw.device_type]
        if not same_type:
            raise UsageError(f"no member of this model is a {hw.device_type} device (members: "
                             f"{sorted({d.device_type for d in self.descriptors_})})")
        if pool == "device_type":
            return same_type
        family = [i for i in same_type if self.descriptors_[i].family == hw.family]
        return family or same_type

    def _spec_distance(self, i: int, hw: HardwareDescriptor) -> float:
        d = self.descriptors_[i]
        shared = [k for k in d.specs if k in hw.specs]
        spec = float(np.sqrt(np.mean([np.log(d.specs[k] / hw.specs[k]) ** 2 for k in shared]))) \
            if shared else 0.0
        return abs(math.log(d.batch_size / hw.batch_size)) * 10 + spec

    def resolve(self, hardware: HardwareDescriptor, random_state: int = 0,
                pool: str = "device_type") -> LatencyPredictor:
        """A table predictor for the device ``hardware`` describes.

        Parameters
        ----------
        hardware : HardwareDescriptor
            The target device setting.
        random_state : int
            Seeds the cross-validation folds.
        pool : {"device_type", "family"}
            Which members the references may choose from and mix: every member of the
            target's device type (default: a member of another batch size can have the
            closer shape, and the references decide), or only those of its family (same
            backend, threads and batch size) when it has any. Without references the
            nearest member of the family is used either way.

        Returns
        -------
        LatencyPredictor
            Kind ``table``; its ``conditioning_`` dict says which way was taken (``references``,
            ``reference`` or ``specs``), from which members and with what weights or scale.
        """
        from .adapt import finetune, global_scale

        self._check_fitted()
        if not isinstance(hardware, HardwareDescriptor):
            raise UsageError(f"hardware must be a HardwareDescriptor, got "
                             f"{type(hardware).__name__}")
        if pool not in ("device_type", "family"):
            raise UsageError(f"pool must be 'device_type' or 'family', got {pool!r}")
        sp = self.space_
        idx = self._candidates(hardware, pool if len(hardware.reference_ms) >= 2 else "family")
        refs = [sp.from_key(k) for k in hardware.reference_ms]
        y = np.array(list(hardware.reference_ms.values()), dtype=np.float64)
        names = [self.descriptors_[i].name + f" b{self.descriptors_[i].batch_size}" for i in idx]
        report = {"target": hardware.name, "candidates": names, "n_references": len(refs)}
        if len(refs) >= 2:
            enc = sp.encode(refs)

            def scaled_mape(i):
                t = self.tables_[i]
                p = t.predict_encoded(enc) * global_scale(t, enc, y)
                return float(np.mean(np.abs(p - y) / y))

            best = min(idx, key=scaled_mape)
            others = [_table_predictor(self.tables_[i]) for i in idx if i != best]
            methods = ["scale"] + (["mix"] if others and len(refs) >= 3 else [])
            pred = finetune(_table_predictor(self.tables_[best]), refs, y, methods=methods,
                            others=others, random_state=random_state,
                            base_name=names[idx.index(best)])
            report.update(way="references", nearest=names[idx.index(best)],
                          method=pred.adaptation_.method, reason=pred.adaptation_.reason,
                          cv_mape_pct=pred.adaptation_.cv_mape_pct)
        else:
            best = min(idx, key=lambda i: self._spec_distance(i, hardware))
            table = self.tables_[best]
            if refs:
                s = global_scale(table, sp.encode(refs), y)
                report.update(way="reference", nearest=names[idx.index(best)], scale=s)
            else:
                s = 1.0
                nd = self.descriptors_[best]
                field = next((f for f in _SPEED_FIELDS if f in nd.specs and f in hardware.specs),
                             None)
                if field is not None:
                    s = nd.specs[field] / hardware.specs[field]
                else:
                    logger.warning("%s: no measured subnet and no speed figure shared with the "
                                   "nearest member %s: its milliseconds are used unchanged",
                                   hardware.name, nd.name)
                report.update(way="specs", nearest=names[idx.index(best)], scale=s,
                              speed_field=field)
            pred = _table_predictor(AdditiveTable(sp, table.fixed_ms * s, table.block_ms * s))
        pred.conditioning_ = report
        logger.info("conditioned on %s: %s via %s", hardware.name, report["way"],
                    report["nearest"])
        return pred

    def predict(self, X, hardware: HardwareDescriptor) -> np.ndarray:
        """Predicted latency (ms) on the device ``hardware`` describes (see :meth:`resolve`)."""
        return self.resolve(hardware).predict(X)

    def member_predictors(self, like: HardwareDescriptor | None = None) -> list:
        """The members as table predictors (those of ``like``'s device type when given)."""
        self._check_fitted()
        idx = self._candidates(like, "device_type") if like is not None else range(len(self.tables_))
        return [_table_predictor(self.tables_[i]) for i in idx]

    # ---------------------------------------------------------------- persistence
    def save(self, directory, metadata: dict | None = None) -> Path:
        """Write ``config.json``, ``tables.safetensors`` and ``files.json`` as the folder
        ``directory``, atomically (:func:`~ofa_latency._folders.writing_folder`)."""
        from safetensors.numpy import save_file

        from .predictors._base import CONFIG_NAME, FORMAT_VERSION, feature_schema

        self._check_fitted()
        d = Path(directory)
        with writing_folder(d) as tmp:  # all files or none, with their sha256 in files.json
            save_file({"fixed_ms": np.stack([t.fixed_ms for t in self.tables_]),
                       "block_ms": np.stack([t.block_ms for t in self.tables_])},
                      str(tmp / TABLES_NAME))
            config = {"format_version": FORMAT_VERSION, "package_version": __version__,
                      "kind": self.kind,
                      "params": {"space": self.space, "member_kind": self.member_kind,
                                 "member_params": self.member_params},
                      "feature_schema": feature_schema(self.space_), "units": "ms",
                      "weights": [TABLES_NAME],
                      "members": [x.to_dict() for x in self.descriptors_],
                      "references": [r.to_dict() for r in self.references_],
                      "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(
                          timespec="seconds"),
                      "metadata": metadata or {}}
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=1))
        return d

    @classmethod
    def load(cls, directory) -> "ConditionedPredictor":
        """Load a folder written by :meth:`save`."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from .predictors._base import CONFIG_NAME, feature_schema, read_config

        d = Path(directory)
        cfg = read_config(d)
        verify_folder(d)
        if cfg.get("kind") != CONDITIONED_KIND:
            raise UsageError(f"{d / CONFIG_NAME}: holds a {cfg.get('kind')!r} predictor, not a "
                             f"conditioned one")
        self = cls(**cfg["params"])
        if cfg.get("feature_schema") != feature_schema(self.space_):
            raise ValueError(f"{d / CONFIG_NAME}: feature schema does not match this "
                             f"ofa-latency's for space {self.space!r}")
        try:
            w = load_file(str(d / TABLES_NAME))
            fixed, block = w["fixed_ms"], w["block_ms"]
        except (SafetensorError, KeyError, OSError, FileNotFoundError) as exc:
            raise ValueError(f"cannot read {d / TABLES_NAME}: {exc}") from exc
        members = cfg.get("members") or []
        if len(members) != len(fixed) or len(block) != len(fixed):
            raise ValueError(f"{d}: {len(members)} member descriptors for {len(fixed)} tables")
        sp = self.space_
        self.tables_ = [AdditiveTable(sp, f, b) for f, b in zip(fixed, block)]
        self.descriptors_ = [HardwareDescriptor.from_dict(m, f"{d / CONFIG_NAME} member {i}")
                             for i, m in enumerate(members)]
        self.references_ = [sp.validate(r) for r in cfg.get("references") or []]
        self.config_ = cfg
        return self


def is_conditioned(directory) -> bool:
    """Whether the predictor folder ``directory`` holds a :class:`ConditionedPredictor`."""
    from .predictors._base import read_config

    return read_config(directory).get("kind") == CONDITIONED_KIND


def read_hardware(source, batch_size: int | None = None, references=None) -> HardwareDescriptor:
    """A descriptor from what a user has at hand.

    Parameters
    ----------
    source : str or Path or HardwareDescriptor
        A descriptor JSON file (:meth:`HardwareDescriptor.save`); a measurement table CSV of
        the target device (its setting, its ``.hardware.json`` when present, and its measured
        rows as references); or the key or name of a GPU in ``data/hardware.csv`` (spec-only,
        ``batch_size`` required).
    batch_size : int, optional
        For a GPU name; checked against a file's batch size when given.
    references : list, optional
        With a table: only its rows of these subnets become references (plus its reference
        level); default all rows.
    """
    if isinstance(source, HardwareDescriptor):
        desc = source
    else:
        path = Path(source)
        if path.is_file() and path.suffix.lower() == ".json":
            desc = HardwareDescriptor.from_json(path)
        elif path.is_file():
            from .datasets import read_measurements
            from .profiling import table_hardware_path

            hw_path = table_hardware_path(path)
            hw = json.loads(hw_path.read_text()) if hw_path.exists() else None
            desc = HardwareDescriptor.from_table(read_measurements(path), hw, str(path),
                                                 references=references)
        elif path.suffix.lower() in (".json", ".csv") or "/" in str(source):
            raise UsageError(f"hardware descriptor file not found: {source}")
        else:
            if batch_size is None:
                raise UsageError(f"a GPU name as hardware ({source!r}) needs a batch size "
                                 f"(--batch-size)")
            return HardwareDescriptor.from_gpu(str(source), batch_size)
    if batch_size is not None and desc.batch_size != batch_size:
        raise UsageError(f"the hardware descriptor {desc.name!r} is for batch {desc.batch_size}, "
                         f"not {batch_size}")
    return desc
