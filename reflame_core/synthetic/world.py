"""The benchmark world: named conditions, how they compose, and which seeds are scored.

A condition is ``(head, rng) -> head`` keeping the truth exact (``synthetic/truth.py``). A
*scenario* is a name for a list of conditions applied in order; ``make_world_head`` builds the
generator's head for a seed and applies the scenario, each condition with its own generator
seeded from (seed, condition name), so adding a condition to a scenario never changes what
the others draw.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reflame_core.assets.flame import (
    FlameTemplate,
    LandmarkEmbedding,
    load_flame_template,
    load_landmark_embedding,
)
from reflame_core.fit.regions import region_labels
from reflame_core.synthetic import appearance, conditions, partial
from reflame_core.synthetic.expression import Expression, fill_mouth
from reflame_core.synthetic.head import SyntheticHead, make_synthetic_head

Condition = Callable[[SyntheticHead, np.random.Generator], SyntheticHead]

# Conditions of the subject rather than the scan: drawn first and applied to the template
# before the scan is made from it (``make_world_head``), as the subject's own face.
SUBJECT_CONDITIONS = ("expression",)

CONDITIONS: dict[str, Condition] = {
    "proportions": conditions.proportions,
    "shape": conditions.shape,
    "rotation": conditions.rotation,
    "units": conditions.units,
    "brightness": appearance.brightness,
    "contrast": appearance.contrast,
    "hue_saturation": appearance.hue_saturation,
    "lighting": appearance.lighting,
    "grayscale": appearance.grayscale,
    "low_res": appearance.low_res,
    "no_texture": appearance.no_texture,
    "cut_neck": partial.cut_neck,
    "no_back": partial.no_back,
    "holes": partial.holes,
    "scalp_cap": partial.scalp_cap,
    "shoulders": partial.shoulders,
    "stand": partial.stand,
    "noise": partial.noise,
}

# Scenarios: one per condition, the generator's own head ("base"), and mixes. Appearance
# comes before geometry that adds or removes faces (lighting reads the head's normals), and
# all after shape and pose.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "base": (),
    **{name: (name,) for name in CONDITIONS},
    "expression": ("expression",),
    "appearance_mix": ("brightness", "contrast", "hue_saturation", "lighting", "low_res"),
    "bust_on_stand": ("shoulders", "stand"),
    "wild_mix": ("proportions", "shape", "rotation", "units", "contrast", "hue_saturation",
                 "lighting", "cut_neck", "holes", "noise"),
}

# Seeds whose heads the benchmark scores. Tuning anything (detector tables, thresholds, fit
# weights) must use other seeds: TUNING_SEEDS are set aside for that. Seeds 11-30 trained the
# MediaPipe index table (tools/fit_mediapipe_table.py).
SCORED_SEEDS = tuple(range(1001, 1101))
TUNING_SEEDS = tuple(range(2001, 2101))


def condition_rng(seed: int, name: str) -> np.random.Generator:
    """The generator condition ``name`` draws from for the head of ``seed``."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def apply_scenario(head: SyntheticHead, names: tuple[str, ...] | list[str], seed: int
                   ) -> SyntheticHead:
    """``head`` with the named scan conditions applied in order, each seeded from (seed,
    name)."""
    for name in names:
        head = CONDITIONS[name](head, condition_rng(seed, name))
    return head


def make_world_head(
    template: FlameTemplate,
    texture: np.ndarray,
    embedding: LandmarkEmbedding,
    scenario: str,
    seed: int,
    *,
    target_vertices: int = 20000,
) -> SyntheticHead:
    """The generator's head for ``seed`` (``make_synthetic_head``) under ``scenario``: the
    subject's expression (if named) made before the scan, then the scan conditions."""
    names = SCENARIOS[scenario]
    face = Expression.draw(condition_rng(seed, "expression")) if "expression" in names else None
    head = make_synthetic_head(
        template, texture, embedding, seed=seed, target_vertices=target_vertices,
        expression=None if face is None else face.deformation(template.faces, embedding))
    if face is not None and face.mouth_inside:
        head = fill_mouth(head)
    return apply_scenario(head, [n for n in names if n not in SUBJECT_CONDITIONS], seed)


@dataclass
class WorldAssets:
    """What building and scoring the world's heads needs: FLAME, the face texture in FLAME UV
    space, and the FLAME region of every vertex (``fit/regions.py``)."""

    template: FlameTemplate
    embedding: LandmarkEmbedding
    texture: np.ndarray
    labels: np.ndarray


def load_world_assets(data: Path) -> WorldAssets:
    """From a test-data folder: ``flame/`` and ``textures/facescape_texmap.jpg``."""
    from PIL import Image

    template = load_flame_template(data / "flame")
    embedding = load_landmark_embedding(data / "flame")
    texture = np.asarray(Image.open(data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    return WorldAssets(template, embedding, texture, region_labels(template, embedding))
