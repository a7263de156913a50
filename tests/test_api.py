"""The public API: ``reflame_core.fit_scan`` on a small synthetic scan written to disk."""

from __future__ import annotations

import json

import reflame_core as rf
from reflame_core.landmarks.landmark_json import save_landmarks
from reflame_core.synthetic.head import write_synthetic_head

TINY = ["cameras.num_views=2", "cameras.resolution=48", "stages.affine.steps=2",
        "stages.coarse.steps=5", "stages.refine.steps=2", "stages.coarse.surface_samples=1000",
        "stages.refine.surface_samples=1000", "stages.texture.enabled=false"]


def test_fit_scan_writes_reports_and_times_a_fit(small_synthetic_head, flame_dir, tmp_path):
    obj = write_synthetic_head(small_synthetic_head, tmp_path / "scan")
    lm = tmp_path / "scan" / "lm.json"
    save_landmarks(lm, small_synthetic_head.true_landmark_set())
    config = rf.FitConfig.preset("fast").with_overrides(TINY)
    assets = rf.load_flame(flame_dir)
    seen: list[rf.FitProgress] = []
    messages: list[str] = []
    result = rf.fit_scan(obj, tmp_path / "out", landmarks=lm, config=config, device="cpu",
                         progress=seen.append, flame=assets, log=messages.append,
                         report_extra={"mine": 1})
    assert isinstance(result, rf.FitResult) and result.ok and result.status == "done"
    assert set(result.paths) == {"fit.obj", "fit_canonical.obj", "landmarks.json",
                                 "losses.csv", "config.toml", "transform.json", "report.json"}
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in result.paths.values())
    on_disk = json.loads(result.paths["report.json"].read_text())
    assert on_disk["status"] == "done" and on_disk["mine"] == 1
    assert on_disk["stages"]["coarse"]["iterations"] == 5
    assert result.report["distances_scan_units"] == on_disk["distances_scan_units"]
    assert set(result.timings) == {"load", "fit", "write", "total"}
    assert result.timings["total"] >= result.timings["fit"] > 0
    # One progress call per step, each saying where in its stage the fit is.
    assert [(p.stage, p.step) for p in seen][-3:] == [("refine", 1), ("refine", 2),
                                                      ("eyeballs", 1)]
    assert [p for p in seen if p.stage == "coarse"][-1].num_steps == 5
    assert rf.load_scan(result.paths["fit.obj"]).vertices.shape == (5023, 3)

    # A second fit into the same folder keeps the first one's files as backups.
    again = rf.fit_scan(obj, tmp_path / "out", landmarks=lm, config=config, device="cpu",
                        flame=assets, log=messages.append)
    assert again.ok and again.paths["fit.obj"].is_file()
    assert len(list((tmp_path / "out").glob("fit.*.bak.obj"))) == 1
    assert any("kept the existing" in m and "report.json" in m for m in messages)
