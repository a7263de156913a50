"""Loss-plot panel: every loss term over iterations, per stage, accumulated from snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

TERM_COLORS = [  # distinct on the dark ImGui background
    (0.35, 0.70, 1.00, 1.0), (1.00, 0.55, 0.15, 1.0), (0.40, 0.90, 0.40, 1.0),
    (1.00, 0.35, 0.35, 1.0), (0.80, 0.55, 1.00, 1.0), (1.00, 0.90, 0.30, 1.0),
    (0.30, 0.95, 0.90, 1.0), (1.00, 0.55, 0.80, 1.0), (0.75, 0.75, 0.75, 1.0),
    (0.65, 0.45, 0.25, 1.0),
]


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
    show_term: dict[str, bool] = field(default_factory=dict)
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
                self.show_term.setdefault(term, True)
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

    @property
    def all_terms(self) -> list[str]:
        """Every loss term of every stage, in first-seen order (the term checkboxes)."""
        return list(self.show_term)

    def term_color(self, term: str) -> tuple[float, float, float, float]:
        """A fixed colour per term, the same in every stage's plot and on its checkbox."""
        i = self.all_terms.index(term) if term in self.show_term else 0
        return TERM_COLORS[i % len(TERM_COLORS)]

    def plot_data(self, stage: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(term, x, y) for one stage's shown terms; y clamped positive on a log scale so
        ImPlot can draw it."""
        out = []
        for term, s in self.series.get(stage, {}).items():
            if not self.show_term.get(term, True):
                continue
            x, y = s.arrays()
            if self.log_scale:
                y = np.maximum(np.abs(y), 1e-12)
            out.append((term, x, y))
        return out

    def latest(self, stage: str) -> dict[str, float]:
        return {t: s.values[-1] for t, s in self.series.get(stage, {}).items() if s.values}
