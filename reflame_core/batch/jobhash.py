"""Which scans are already done: a job's hash covers its inputs and its configuration, and is
recorded in the ``report.json`` of its output folder; a folder whose report carries the same
hash and says the fit finished is skipped on the next run.

Inputs are fingerprinted by path, size and modification time (not content: hashing a
dataset of large scans would take longer than some fits): the scan file, the files beside it
with the same stem (its MTL and texture), and the landmark file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from reflame_core import __version__
from reflame_core.batch.inputs import BatchJob
from reflame_core.fit.config import FitConfig

# Files a finished fit always has (fit.mtl / fit.png only with a texture).
REQUIRED_OUTPUTS = ("fit.obj", "fit_canonical.obj", "landmarks.json", "losses.csv",
                    "config.toml", "transform.json", "report.json")


def _fingerprint(path: Path) -> list:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


class FolderIndex:
    """Files of each folder by stem, each folder listed once (a dataset's folder may hold
    thousands of scans: globbing it once per scan would be quadratic)."""

    def __init__(self) -> None:
        self._folders: dict[Path, dict[str, list[Path]]] = {}

    def same_stem(self, path: Path) -> list[Path]:
        """Files beside ``path`` whose name is its stem plus one extension, sorted."""
        folder = self._folders.get(path.parent)
        if folder is None:
            folder = self._folders[path.parent] = {}
            for p in sorted(path.parent.iterdir()):
                if p.is_file():
                    folder.setdefault(p.name.rsplit(".", 1)[0], []).append(p)
        return [p for p in folder.get(path.stem, []) if p != path]


def input_files(job: BatchJob, index: FolderIndex | None = None) -> list[Path]:
    """The files a job reads: the scan, its same-stem siblings, the landmark file."""
    siblings = (index or FolderIndex()).same_stem(job.scan)
    return [job.scan, *siblings, *([job.landmarks] if job.landmarks else [])]


def job_hash(job: BatchJob, config: FitConfig, index: FolderIndex | None = None) -> str:
    """sha256 (hex) of the inputs' fingerprints, the full configuration and the version;
    pass one ``index`` for all the jobs of a batch."""
    doc = {
        "version": __version__,
        "inputs": [_fingerprint(p) for p in input_files(job, index)],
        "landmarks": str(job.landmarks) if job.landmarks else None,
        "config": config.data,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def read_report(folder: Path) -> dict | None:
    """The folder's report.json, or None when missing or unreadable."""
    try:
        return json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(folder: Path, expected_hash: str) -> bool:
    """Whether ``folder`` holds a finished fit made from the job with ``expected_hash``."""
    report = read_report(folder)
    if report is None or not isinstance(report.get("batch"), dict):
        return False
    return (report["batch"].get("job_hash") == expected_hash and report.get("status") == "done"
            and all((folder / n).is_file() for n in REQUIRED_OUTPUTS))
