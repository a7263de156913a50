"""First-run panel: which FLAME files are needed, which are present, where to get them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reflame_app.dialogs import PathField
from reflame_core.assets.flame import EMBEDDING_NPY, MODEL_PKLS, TEMPLATE_NPZ, TEMPLATE_OBJ
from reflame_core.assets.locate import flame_assets_status, missing_flame_files

FLAME_URL = "https://flame.is.tue.mpg.de"


@dataclass
class AssetRow:
    file: str
    present: bool
    description: str


@dataclass
class AssetNeed:
    """One thing the fitter needs, met by any one of ``options`` (each a group of files that
    are all needed together): "either A, or B + C"."""

    what: str
    options: list[list[AssetRow]]

    @property
    def satisfied(self) -> bool:
        return any(all(r.present for r in opt) for opt in self.options)


@dataclass
class FirstRunState:
    """Shown while no usable FLAME folder is set; ``folder`` is the picker (native dialog or
    text field), ``rows`` the status of each needed file in the folder last checked."""

    folder: PathField = field(
        default_factory=lambda: PathField("folder", "Select the FLAME asset folder"))
    rows: list[AssetRow] = field(default_factory=list)
    checked: Path | None = None
    problem: str | None = None
    missing: list[str] = field(default_factory=list)

    def needs(self) -> list[AssetNeed]:
        """``rows`` grouped by what they are for, alternatives together: the template is
        either flame_template.npz, or the FLAME model .pkl + head_template.obj; the landmark
        embedding is one file."""
        by_name = {r.file: r for r in self.rows}
        npz = by_name.get(TEMPLATE_NPZ)
        obj = by_name.get(TEMPLATE_OBJ)
        pkl = next((r for r in self.rows if r.file in MODEL_PKLS), None)
        emb = by_name.get(EMBEDDING_NPY)
        needs = []
        options = [[r] for r in (npz,) if r is not None]
        if pkl is not None and obj is not None:
            options.append([pkl, obj])
        if options:
            needs.append(AssetNeed("FLAME template", options))
        if emb is not None:
            needs.append(AssetNeed("landmark embedding", [[emb]]))
        grouped = {r.file for need in needs for opt in need.options for r in opt}
        needs += [AssetNeed(r.file, [[r]]) for r in self.rows if r.file not in grouped]
        return needs

    def check(self, folder: Path | None) -> bool:
        """Refresh ``rows`` for ``folder`` (None: list the files as missing). True when every
        needed file is present."""
        self.checked = folder
        self.rows = [AssetRow(s.name, s.present, s.description)
                     for s in flame_assets_status(folder)]
        if folder is None or not folder.is_dir():
            self.missing = ["the folder itself (it does not exist)"] if folder else []
            return False
        self.missing = missing_flame_files(folder)
        return not self.missing
