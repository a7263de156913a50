"""What to fit: folders (searched recursively), globs, scan files and manifests, as jobs.

A manifest is a ``.csv`` or ``.txt`` file; relative paths in it are relative to its folder.

- CSV, with a header row: ``scan`` (required), ``landmarks`` (a landmark JSON, may be empty),
  ``set`` (``KEY=VALUE`` overrides separated by ``;``, may be empty).
- TXT: one scan per line, written as on the command line:
  ``SCAN [--landmarks FILE] [--set KEY=VALUE]...``; blank lines and ``#`` comments are skipped.
"""

from __future__ import annotations

import csv
import glob
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from reflame_core.errors import InputFileError

SCAN_SUFFIXES = (".obj", ".ply", ".glb", ".gltf")
MANIFEST_SUFFIXES = (".csv", ".txt")


@dataclass(frozen=True)
class BatchJob:
    """One scan to fit.

    Attributes:
        scan: the scan file (absolute).
        root: the folder its output name is taken relative to (the folder, glob base or
            manifest folder it came from).
        landmarks: a landmark JSON for this scan, or None (detected).
        overrides: ``KEY=VALUE`` settings for this scan only, over the batch's.
        source: where the job was listed (for error messages), e.g. ``list.csv:4``.
    """

    scan: Path
    root: Path
    landmarks: Path | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)
    source: str = ""


def collect_jobs(inputs: list[str | Path]) -> list[BatchJob]:
    """Every job the inputs name, in order, each scan once (the first listing wins).

    Raises InputFileError naming the input when it matches no scan, a manifest line is
    malformed, or a file it names does not exist.
    """
    jobs: list[BatchJob] = []
    seen: set[Path] = set()
    for item in inputs:
        for job in _expand(str(item)):
            if job.scan not in seen:
                seen.add(job.scan)
                jobs.append(job)
    return jobs


def _expand(item: str) -> list[BatchJob]:
    path = Path(item).expanduser()
    if path.is_dir():
        scans = find_scans(path)
        if not scans:
            raise InputFileError(path, f"no scan files ({', '.join(SCAN_SUFFIXES)}) in this "
                                 "folder or below")
        return [BatchJob(s, path.resolve(), source=str(path)) for s in scans]
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in MANIFEST_SUFFIXES:
            return read_manifest(path)
        if suffix in SCAN_SUFFIXES:
            return [BatchJob(path.resolve(), path.resolve().parent, source=str(path))]
        raise InputFileError(path, "not a scan (.obj .ply .glb .gltf), folder or manifest "
                             "(.csv .txt)")
    if glob.has_magic(item):
        hits = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        scans = [p.resolve() for p in hits if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES]
        if not scans:
            raise InputFileError(item, "this pattern matches no scan file")
        base = _glob_base(path)
        return [BatchJob(s, base, source=item) for s in scans]
    raise InputFileError(path, "no such file or folder")


def find_scans(folder: Path) -> list[Path]:
    """Scan files under ``folder``, recursively, sorted; hidden folders (our own temporary
    output folders among them) are skipped."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES \
                and not any(part.startswith(".") for part in rel):
            out.append(p.resolve())
    return out


def _glob_base(pattern: Path) -> Path:
    """The folder part of a glob before its first wildcard."""
    parts = []
    for part in pattern.parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts).resolve() if parts else Path.cwd()


def read_manifest(path: Path) -> list[BatchJob]:
    """The jobs of a CSV or TXT manifest (see the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"cannot read the manifest ({exc})") from None
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _txt_rows(path, text)
    base = path.resolve().parent
    jobs = []
    for line, scan, landmarks, overrides in rows:
        where = f"{path}:{line}"
        scan_path = _existing(base, scan, where, "scan")
        if scan_path.suffix.lower() not in SCAN_SUFFIXES:
            raise InputFileError(where, f"{scan} is not a scan (.obj .ply .glb .gltf)")
        lm_path = _existing(base, landmarks, where, "landmark file") if landmarks else None
        for o in overrides:
            if "=" not in o:
                raise InputFileError(where, f"setting '{o}' must look like section.key=value")
        jobs.append(BatchJob(scan_path, base, lm_path, tuple(overrides), where))
    if not jobs:
        raise InputFileError(path, "the manifest lists no scan")
    return jobs


def _existing(base: Path, name: str, where: str, what: str) -> Path:
    p = Path(name).expanduser()
    p = (p if p.is_absolute() else base / p).resolve()
    if not p.is_file():
        raise InputFileError(where, f"{what} {name} not found")
    return p


def _csv_rows(path: Path, text: str):
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "scan" not in fields:
        raise InputFileError(path, "a CSV manifest needs a header row with a 'scan' column "
                             "(optional: 'landmarks', 'set')")
    unknown = set(fields) - {"scan", "landmarks", "set"}
    if unknown:
        raise InputFileError(path, f"unknown column(s) {', '.join(sorted(unknown))} "
                             "(columns: scan, landmarks, set)")
    for i, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue
        if not row.get("scan"):
            raise InputFileError(f"{path}:{i}", "the 'scan' column is empty")
        sets = [s.strip() for s in row.get("set", "").split(";") if s.strip()]
        yield i, row["scan"], row.get("landmarks") or None, sets


def _txt_rows(path: Path, text: str):
    for i, line in enumerate(text.splitlines(), start=1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InputFileError(f"{path}:{i}", f"cannot parse the line ({exc})") from None
        if not words:
            continue
        scan, landmarks, sets = words[0], None, []
        rest = iter(words[1:])
        for word in rest:
            value = next(rest, None)
            if word not in ("--landmarks", "--set") or value is None:
                raise InputFileError(f"{path}:{i}", f"expected SCAN [--landmarks FILE] "
                                     f"[--set KEY=VALUE]..., got '{line.strip()}'")
            if word == "--landmarks":
                landmarks = value
            else:
                sets.append(value)
        yield i, scan, landmarks, sets
