"""The stage bars of ``reflame fit``: one line per event, its stage named once."""

from __future__ import annotations

import io

from reflame_core.fit.progress import FitProgress, StageBars
from reflame_core.fit.session import StepReport


def test_events_name_their_stage_once() -> None:
    out = io.StringIO()
    bars = StageBars(file=out)
    events = ["coarse: converged (...); stopped at iteration 100 of 1000",
              "step undone: the depth term was not finite"]
    for i, event in enumerate(events):
        bars(FitProgress("coarse", i + 1, 2, StepReport("coarse", i, {"total": 1.0}, 0.01,
                                                        event)))
    bars.close()
    lines = [ln.split("\r")[-1] for ln in out.getvalue().splitlines()]
    assert "coarse: converged (...); stopped at iteration 100 of 1000" in lines
    assert "coarse: step undone: the depth term was not finite" in lines
    assert not any("coarse: coarse:" in ln for ln in lines)


def test_a_following_stage_s_skip_is_not_credited_to_the_stage_that_ended() -> None:
    out = io.StringIO()
    bars = StageBars(file=out)
    event = "texture stage skipped: the scan has neither a texture image with UVs nor colours"
    bars(FitProgress("eyeballs", 1, 1, StepReport("eyeballs", 0, {}, 0.01, event)))
    bars.close()
    lines = [ln.split("\r")[-1] for ln in out.getvalue().splitlines()]
    assert event in lines
    assert not any(ln.startswith("eyeballs: texture") for ln in lines)
