"""First-run panel: which FLAME files are needed, which are present, where to get them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reflame_app.dialogs import PathField
from reflame_core.assets.locate import flame_assets_status, missing_flame_files

FLAME_URL = "https://flame.is.tue.mpg.de"


@dataclass
class AssetRow:
    file: str
    present: bool
    description: str


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
