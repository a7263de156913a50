"""Stable output folder names: a scan's path below its input root, ``/`` -> ``__``, without
the extension (``subj01/neutral.obj`` -> ``subj01__neutral``). Scans that would share a name
keep their extension (``a.obj``, ``a.ply``); any still shared get a hash of their full path.
A name depends only on the scan's own path and the scans that collide with it."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from reflame_core.batch.inputs import BatchJob


def base_name(scan: Path, root: Path, *, keep_suffix: bool = False) -> str:
    try:
        rel = scan.relative_to(root)
    except ValueError:
        rel = Path(scan.name)
    if not keep_suffix:
        rel = rel.with_suffix("")
    name = "__".join(rel.parts)
    # A leading dot would hide the folder (hidden folders are our temporary ones).
    return name.lstrip(".") or "scan"


def output_names(jobs: list[BatchJob]) -> list[str]:
    """One distinct folder name per job, in the jobs' order."""
    names = [base_name(j.scan, j.root) for j in jobs]
    counts = Counter(names)
    names = [base_name(j.scan, j.root, keep_suffix=True) if counts[n] > 1 else n
             for j, n in zip(jobs, names, strict=True)]
    counts = Counter(names)
    return [f"{n}-{hashlib.sha1(str(j.scan).encode()).hexdigest()[:8]}" if counts[n] > 1 else n
            for j, n in zip(jobs, names, strict=True)]
