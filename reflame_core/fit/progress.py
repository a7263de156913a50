"""Progress of one fit: what ``fit_scan`` tells its ``progress`` callback after every step, and
the per-stage progress bars ``reflame fit`` draws from it."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from reflame_core.fit.session import StepReport


# "coarse: ..." or "texture stage skipped: ...": an event that begins with a stage's name.
_NAMES_A_STAGE = re.compile(r"^[a-z_]+(: | stage )")


@dataclass(frozen=True)
class FitProgress:
    """One step done. ``step`` of ``num_steps`` counts the iterations of ``stage``."""

    stage: str
    step: int
    num_steps: int
    report: StepReport


class StageBars:
    """A ``progress`` callback drawing one tqdm bar per stage (close it when the fit ends)."""

    def __init__(self, *, disable: bool = False, file: TextIO | None = None) -> None:
        self.disable = disable
        self.file = file or sys.stderr
        self._bar = None
        self._stage: str | None = None

    def __call__(self, p: FitProgress) -> None:
        from tqdm import tqdm

        if p.stage != self._stage:
            self.close()
            self._stage = p.stage
            self._bar = tqdm(total=p.num_steps, desc=p.stage, disable=self.disable,
                             file=self.file, leave=True)
        self._bar.update(1)
        if p.report.event:
            # Events that name a stage already ("coarse: converged ...", or the next stage's
            # "texture stage skipped: ...", reported with the step that ended this one) are
            # written as they are.
            event = p.report.event
            named = _NAMES_A_STAGE.match(event) is not None
            tqdm.write(event if named else f"{p.report.stage}: {event}", file=self.file)
        if "total" in p.report.losses:
            self._bar.set_postfix(loss=f"{p.report.losses['total']:.4g}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
