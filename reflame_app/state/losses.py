"""Loss-plot panel: every loss term over iterations, per stage, accumulated from snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LossSeries:
    iterations: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) float64 arrays, the form ImPlot takes."""
        return np.asarray(self.iterations, np.float64), np.asarray(self.values, np.float64)


@dataclass
class LossPlotState:
    """Loss history by stage and term. ``update`` takes the engine's full history each time
    (it is short) and rebuilds only when it grew or was reset (a restarted stage)."""

    series: dict[str, dict[str, LossSeries]] = field(default_factory=dict)
    log_scale: bool = True
    show_stage: dict[str, bool] = field(default_factory=dict)
    _seen: int = 0

    def update(self, history: Iterable[tuple[str, int, Mapping[str, float]]]) -> bool:
        """history: (stage, iteration, {term: value}) records in order. Returns whether the
        plot data changed."""
        records = list(history)
        if len(records) == self._seen:
            return False
        if len(records) < self._seen:
            self.series.clear()
            self._seen = 0
        for stage, iteration, losses in records[self._seen:]:
            per_term = self.series.setdefault(stage, {})
            self.show_stage.setdefault(stage, True)
            for term, value in losses.items():
                s = per_term.setdefault(term, LossSeries())
                s.iterations.append(int(iteration))
                s.values.append(float(value))
        self._seen = len(records)
        return True

    @property
    def stages(self) -> list[str]:
        return list(self.series)

    def terms(self, stage: str) -> list[str]:
        return list(self.series.get(stage, {}))

    def plot_data(self, stage: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(term, x, y) for one stage; y clamped positive on a log scale so ImPlot can draw it."""
        out = []
        for term, s in self.series.get(stage, {}).items():
            x, y = s.arrays()
            if self.log_scale:
                y = np.maximum(np.abs(y), 1e-12)
            out.append((term, x, y))
        return out

    def latest(self, stage: str) -> dict[str, float]:
        return {t: s.values[-1] for t, s in self.series.get(stage, {}).items() if s.values}
