"""A folder of synthetic heads, as a user's dataset would be, for batch tests and benchmarks:
``head_<seed>/scan.obj`` (+ MTL, PNG, truth.npz) with its true landmarks as
``head_<seed>/landmarks.json``, and a ``manifest.csv`` listing both."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from reflame_core.assets.flame import FlameTemplate, LandmarkEmbedding
from reflame_core.landmarks.landmark_json import save_landmarks
from reflame_core.synthetic.head import make_synthetic_head, write_synthetic_head


def write_synthetic_dataset(
    folder: str | Path,
    template: FlameTemplate,
    texture: np.ndarray,
    embedding: LandmarkEmbedding,
    seeds: Iterable[int],
    *,
    target_vertices: int,
) -> Path:
    """Write one head per seed into ``folder``; returns the manifest (``scan,landmarks``
    columns, paths relative to ``folder``)."""
    folder = Path(folder)
    lines = ["scan,landmarks"]
    for seed in seeds:
        head = make_synthetic_head(template, texture, embedding, seed=seed,
                                   target_vertices=target_vertices)
        sub = folder / f"head_{seed:04d}"
        write_synthetic_head(head, sub)
        save_landmarks(sub / "landmarks.json", head.true_landmark_set())
        lines.append(f"{sub.name}/scan.obj,{sub.name}/landmarks.json")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest
