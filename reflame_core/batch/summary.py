"""``summary.csv`` and ``summary.json``: one row per scan of the batch (done, skipped or failed)
with its seconds, fit->scan distances, flagged landmark outliers, the fit's warnings and
error."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reflame_core.io.atomic import write_json_atomic, write_text_atomic

FIELDS = ("name", "scan", "status", "seconds", "attempts", "device", "fit_to_scan_mean",
          "fit_to_scan_p95", "fit_to_scan_mean_relative", "landmark_outliers",
          "outlier_landmarks", "warnings", "note", "error", "out_dir")


@dataclass
class SummaryRow:
    """One scan. ``status``: "done" (fitted now), "skipped" (already done, unchanged),
    "failed" (``error`` says why, in one line) or "interrupted" (the batch was stopped).
    Distances are in scan units (relative: a fraction of the scan's largest side); None
    when there is no fit."""

    name: str
    scan: str
    status: str
    seconds: float = 0.0
    attempts: int = 0
    device: str | None = None
    fit_to_scan_mean: float | None = None
    fit_to_scan_p95: float | None = None
    fit_to_scan_mean_relative: float | None = None
    landmark_outliers: int = 0
    outlier_landmarks: list[str] = field(default_factory=list)
    # report.json's warnings (a doubtful detection, a fit without landmarks, far from the scan).
    warnings: list[str] = field(default_factory=list)
    note: str = ""
    error: str = ""
    out_dir: str = ""

    def add_report(self, report: dict | None) -> None:
        """Fill the distances, outliers and warnings from a fit's report.json dict."""
        if not report:
            return
        dist = report.get("distances_scan_units") or {}
        rel = report.get("distances_relative_to_scan_size") or {}
        self.fit_to_scan_mean = dist.get("fit_to_scan_mean")
        self.fit_to_scan_p95 = dist.get("fit_to_scan_p95")
        self.fit_to_scan_mean_relative = rel.get("fit_to_scan_mean")
        outliers = report.get("landmark_outliers") or []
        self.landmark_outliers = len(outliers)
        self.outlier_landmarks = [str(o.get("name", o.get("index"))) for o in outliers]
        self.warnings = [str(w) for w in report.get("warnings") or []]
        self.device = self.device or report.get("device")


def counts(rows: list[SummaryRow]) -> dict[str, int]:
    out = {"total": len(rows), "done": 0, "skipped": 0, "failed": 0}
    for r in rows:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def write_summary(out_root: Path, rows: list[SummaryRow], *, seconds: float) -> dict:
    """Write summary.csv and summary.json (atomically) into ``out_root``; returns the JSON
    document."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        d = asdict(r)
        d["outlier_landmarks"] = ";".join(r.outlier_landmarks)
        d["warnings"] = " | ".join(r.warnings)
        d["seconds"] = f"{r.seconds:.2f}"
        w.writerow({k: "" if d[k] is None else d[k] for k in FIELDS})
    write_text_atomic(out_root / "summary.csv", buf.getvalue())
    doc = {**counts(rows), "seconds": seconds, "scans": [asdict(r) for r in rows]}
    write_json_atomic(out_root / "summary.json", doc)
    return doc
