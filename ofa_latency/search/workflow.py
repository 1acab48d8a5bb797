"""After the search: verify the candidates on the device, choose by *measured* latency,
re-search with a tightened budget when none fits, and export the winner with its evidence.

:func:`search_and_verify` runs the loop; :func:`deploy` writes ``subnet.onnx`` (checked against
PyTorch), ``subnet.config.json`` (OFA net config), ``report.json`` and ``summary.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from .finders import SearchResult, search

logger = logging.getLogger(__name__)

__all__ = ["Verification", "verify", "confirm", "search_and_verify", "deploy",
           "search_verify_deploy", "SearchOutcome", "NOISE_FLOOR_PCT"]

# A measured latency this far above the budget is a violation beyond the profiler's noise
# (the scale-free noise floor of onnxruntime on this project's CPU host is about 1 %;
# BENCHMARKS.md section 3).
NOISE_FLOOR_PCT = 1.0


@dataclasses.dataclass
class Verification:
    """Candidates measured on the device: predicted vs measured, and the one chosen."""

    budget_ms: float
    search_budget_ms: float
    rows: list  # [{"arch", "accuracy", "predicted_ms", "measured_ms", "meets"}], search order
    chosen: int | None
    table: str

    @property
    def chosen_row(self) -> dict | None:
        return None if self.chosen is None else self.rows[self.chosen]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def verify(result: SearchResult, space, backend, batch_size: int, table, top_k: int = 5,
           constraint: int = 0, budget_ms: float | None = None, progress: bool = True,
           owned: bool = False, allow_machine_change: bool = False) -> Verification:
    """Profile the ``top_k`` best candidates of ``result`` on ``backend`` (appended to the
    resumable ``table``) and choose the most accurate whose measured latency meets the budget
    of constraint ``constraint`` (or ``budget_ms``). ``owned``: the table was created by this
    run, so appending to it skips the machine-state check."""
    from ..profiling import profile_subnets

    cands = result.candidates[:top_k]
    budget = float(budget_ms if budget_ms is not None else result.budgets_ms[constraint])
    subs = [space.validate(c["arch"]) for c in cands]
    df = profile_subnets(space, backend, subs, batch_size, table, progress=progress,
                         check_machine=not owned, allow_machine_change=allow_machine_change)
    measured = {(a, int(r)): float(v) for a, r, v in zip(df["arch"], df["image_size"],
                                                         df["latency_ms"])}
    rows = []
    for c, s in zip(cands, subs):
        m = measured[(s.arch_json(), s.image_size)]
        rows.append({"arch": s.to_dict(), "accuracy": c["accuracy"],
                     "predicted_ms": c["latency_ms"][constraint], "measured_ms": m,
                     "meets": m <= budget})
    ok = [i for i, r in enumerate(rows) if r["meets"]]
    chosen = max(ok, key=lambda i: rows[i]["accuracy"]) if ok else None
    return Verification(budget_ms=budget, search_budget_ms=result.budgets_ms[constraint],
                        rows=rows, chosen=chosen, table=str(table))


def confirm(space, backend, arch, batch_size: int, table, budget_ms: float) -> dict:
    """Re-measure the chosen subnet in a fresh window (a new preparation, interleaved with the
    reference) and express it at the verification table's reference level: the confirmation
    written into ``report.json``. ``meets``: the confirmed latency is within the budget plus
    :data:`NOISE_FLOOR_PCT`."""
    from ..datasets import read_measurements
    from ..profiling.timing import TimingProtocol, measure
    from ..spaces import reference_subnet

    sub = space.validate(arch)
    ref = backend.prepare(space, reference_subnet(space), batch_size)
    res = measure(backend.prepare(space, sub, batch_size), ref, None, TimingProtocol())
    level = float(read_measurements(table)["ref_baseline_ms"].iloc[0])
    ms = float(res.ratio * level) if res.ratio == res.ratio else float(res.latency_raw_ms)
    out = {"measured_ms": round(ms, 4), "ratio": round(float(res.ratio), 6),
           "spread_pct": round(float(res.spread_pct), 2), "budget_ms": budget_ms,
           "over_budget_pct": round(100 * (ms / budget_ms - 1), 2),
           "meets": bool(ms <= budget_ms * (1 + NOISE_FLOOR_PCT / 100))}
    if not out["meets"]:
        logger.warning("the chosen subnet re-measured %.3f ms in a fresh window, %.1f %% over "
                       "the %.3f ms budget (beyond the %.1f %% noise floor)", ms,
                       out["over_budget_pct"], budget_ms, NOISE_FLOOR_PCT)
    return out


def search_and_verify(constraints, acc, backend, batch_size: int, table, finder: str = "fast",
                      seed: int = 0, top_k: int = 5, max_rounds: int = 3, progress: bool = True,
                      allow_machine_change: bool = False, **params):
    """Search, verify the top candidates on the device (constraint 0's budget), and when none
    meets it measured, search again with that budget tightened by the candidates' median
    measured/predicted ratio (at most ``max_rounds`` searches).

    Returns
    -------
    (SearchResult, list of Verification)
        The last search and every round's verification; the last one's ``chosen`` is the
        answer (None when no round found a subnet that meets the budget measured).
    """
    constraints = list(constraints)
    budget = constraints[0].latency_ms
    owned = not Path(table).exists()  # a table this run creates: its own rounds never fail
    rounds = []
    current = constraints
    for k in range(max_rounds):
        res = search(current, acc, finder, seed=seed, top_k=max(top_k, 10), **params)
        ver = verify(res, acc.space, backend, batch_size, table, top_k=top_k, budget_ms=budget,
                     progress=progress, owned=owned,
                     allow_machine_change=allow_machine_change)
        rounds.append(ver)
        ratios = [r["measured_ms"] / r["predicted_ms"] for r in ver.rows]
        logger.info("round %d: search budget %.3f ms, %d of %d candidates meet %.3f ms measured "
                    "(measured/predicted %.3f median)", k + 1, current[0].latency_ms,
                    sum(r["meets"] for r in ver.rows), len(ver.rows), budget,
                    float(np.median(ratios)))
        if ver.chosen is not None:
            return res, rounds
        tighter = current[0].latency_ms / max(float(np.median(ratios)), 1.0) * 0.99
        current = [dataclasses.replace(current[0], latency_ms=tighter)] + current[1:]
    logger.warning("no candidate met %.3f ms measured after %d searches", budget, max_rounds)
    return res, rounds


@dataclasses.dataclass
class SearchOutcome:
    """What :func:`search_verify_deploy` did: the last search, every verification round
    (empty without a device), the report written to ``report.json`` and the output folder."""

    result: SearchResult
    rounds: list
    report: dict
    out_dir: Path

    @property
    def summary(self) -> str:
        return summary_text(self.report)


def search_verify_deploy(constraints, acc, out_dir, backend=None, batch_size: int = 1,
                         finder: str = "fast", seed: int = 0, top_k: int = 5,
                         export: bool = True, progress: bool = True, estimators=(),
                         setting: dict | None = None, hardware: dict | None = None,
                         allow_machine_change: bool = False, **params) -> SearchOutcome:
    """The whole search step: search under ``constraints``; with ``backend``, verify the top
    ``top_k`` candidates on the device (:func:`search_and_verify`, table
    ``out_dir/verify.csv``) and keep the most accurate that meets the budget measured; write
    ``search.json``, ``report.json``, ``summary.md`` and (``export``) ``subnet.onnx``.

    Raises
    ------
    UsageError
        When verification confirmed no candidate (the closest ones are in ``verify.csv``).
    """
    from ..errors import UsageError

    constraints = list(constraints)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise UsageError(f"top_k = {top_k!r}; the number of candidates must be an int >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = constraints[0].estimator
    logger.info("searching %s: %s finder, %d budget(s), %s", first.space.name, finder,
                len(constraints), acc.label)
    ver, rounds = None, []
    if backend is not None:
        res, rounds = search_and_verify(constraints, acc, backend, batch_size, out / "verify.csv",
                                        finder=finder, seed=seed, top_k=top_k,
                                        progress=progress,
                                        allow_machine_change=allow_machine_change, **params)
        ver = rounds[-1]
        if ver.chosen is None:
            best = min(ver.rows, key=lambda r: r["measured_ms"])
            raise UsageError(f"no candidate met {constraints[0].latency_ms} ms measured on "
                             f"{backend.name} after {len(rounds)} searches; the fastest "
                             f"measured {best['measured_ms']:.3f} ms; see {out / 'verify.csv'}")
        arch = ver.chosen_row["arch"]
        confirmation = confirm(first.space, backend, arch, batch_size, out / "verify.csv",
                               float(constraints[0].latency_ms))
    else:
        res = search(constraints, acc, finder, seed=seed, top_k=top_k, **params)
        arch, confirmation = res.arch, None
    (out / "search.json").write_text(json.dumps(res.to_dict(), indent=1))
    report = deploy(out, first.space, arch, res, ver, batch_size=batch_size,
                    setting=setting if setting is not None else first.setting,
                    hardware=hardware if hardware is not None else first.hardware,
                    estimators=list(estimators) or [c.name for c in constraints],
                    export=export, accuracy_source=getattr(acc, "source", None),
                    accuracy_note=getattr(acc, "note", None), confirmation=confirmation)
    return SearchOutcome(res, rounds, report, out)


def deploy(out_dir, space, arch: dict, result: SearchResult, verification: Verification | None,
           batch_size: int = 1, setting: dict | None = None, hardware: dict | None = None,
           estimators=(), export: bool = True, accuracy_source: str | None = None,
           accuracy_note: str | None = None, confirmation: dict | None = None) -> dict:
    """Write the chosen subnet and its evidence into ``out_dir``; returns the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sub = space.validate(arch)
    row = next((r for r in (verification.rows if verification else [])
                if space.validate(r["arch"]) == sub), None)
    cand = next((c for c in result.candidates if space.validate(c["arch"]) == sub), None)
    user = result.extra.get("user_budgets_ms", result.budgets_ms)
    report = {
        "space": space.name, "arch": sub.to_dict(), "finder": result.finder,
        "accuracy": cand["accuracy"] if cand else result.accuracy,
        "accuracy_label": result.accuracy_label,
        "accuracy_source": accuracy_source,
        "accuracy_note": accuracy_note,
        "predicted_ms": cand["latency_ms"] if cand else None,
        # the user's budgets (a re-search after verification searched under a tighter one)
        "budgets_ms": ([verification.budget_ms] + user[1:]) if verification else user,
        "confidence": result.extra.get("confidence"),
        "search_budgets_ms": result.budgets_ms,
        "estimators": list(estimators),
        "measured_ms": row["measured_ms"] if row else None,
        "meets_budget_measured": row["meets"] if row else None,
        "confirmation": confirmation,
        "batch_size": batch_size, "setting": setting, "hardware": hardware,
        "search_seconds": result.seconds, "search_extra": result.extra,
        "verification": verification.to_dict() if verification else None,
        "net_config": space.net_config(sub),
    }
    if export:
        from ..export import export_onnx

        info = export_onnx(space, sub, out / "subnet.onnx", batch_size=batch_size)
        report["onnx"] = {"path": "subnet.onnx", "config": "subnet.config.json",
                          "max_abs_diff_vs_torch": info["max_abs_diff"],
                          "size_mb": round(info["size_mb"], 3)}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    (out / "summary.md").write_text(summary_text(report))
    return report


def summary_text(report: dict) -> str:
    """A short human-readable summary of a :func:`deploy` report."""
    acc = report["accuracy"]
    proxy = "proxy" in (report["accuracy_label"] or "").lower()
    lines = [f"# Chosen subnet ({report['space']}, {report['finder']} finder)", ""]
    if report.get("accuracy_note"):
        lines += [f"**{report['accuracy_note']}**", ""]
    lines += [
             f"- {'score (MACs proxy, not accuracy)' if proxy else 'predicted top-1 accuracy'}: "
             f"{acc:.4f}" + ("" if proxy else f" ({100 * acc:.2f} %)")]
    for i, b in enumerate(report["budgets_ms"]):
        name = report["estimators"][i] if i < len(report["estimators"]) else f"constraint {i}"
        pred = report["predicted_ms"][i] if report["predicted_ms"] else float("nan")
        sb = report["search_budgets_ms"][i]
        conf = (report.get("confidence") or [None] * (i + 1))[i]
        why = f"its {conf:g} upper bound meets the budget" if conf else "after verification"
        lines.append(f"- budget {b:.3f} ms ({name}): predicted {pred:.3f} ms"
                     + (f" (searched under {sb:.3f} ms: {why})" if abs(sb - b) > 1e-9 else ""))
    if report["measured_ms"] is not None:
        lines.append(f"- measured on the device: {report['measured_ms']:.3f} ms "
                     f"({'meets' if report['meets_budget_measured'] else 'EXCEEDS'} the budget)")
    else:
        lines.append("- not verified on the device")
    if report.get("confirmation"):
        c = report["confirmation"]
        lines.append(f"- confirmed in a fresh window: {c['measured_ms']:.3f} ms "
                     f"({c['over_budget_pct']:+.1f} % against the budget; "
                     f"{'meets it' if c['meets'] else 'EXCEEDS it beyond the noise floor'})")
    if report.get("onnx"):
        o = report["onnx"]
        lines.append(f"- ONNX: {o['path']} ({o['size_mb']:.1f} MB; max |ONNX Runtime - PyTorch| "
                     f"{o['max_abs_diff_vs_torch']:.1e}); OFA net config: {o['config']}")
    lines += ["", "```json", json.dumps(report["arch"]), "```", ""]
    return "\n".join(lines)

