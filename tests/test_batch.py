"""``reflame batch`` end to end on a local Dask cluster of 2 CPU worker processes: 4 small
synthetic heads and a corrupt file; a second run skips what is done; a worker killed with
SIGKILL in the middle of the batch does not stop it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from importlib.metadata import EntryPoint

import numpy as np
import pytest

from reflame_core import cli
from reflame_core.batch.schedule import BatchOptions, run_batch
from reflame_core.synthetic.dataset import write_synthetic_dataset
from reflame_core.synthetic.head import SMALL_TARGET_VERTICES

# Tiny fits (a few seconds each on one core): the batch machinery is under test here.
TINY = [
    "cameras.num_views=2", "cameras.resolution=48", "stages.affine.steps=2",
    "stages.coarse.steps=6", "stages.refine.steps=3", "stages.coarse.surface_samples=1000",
    "stages.refine.surface_samples=1000", "stages.texture.enabled=false",
]
SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, flame_template, facescape_texture, landmark_embedding):
    """manifest.csv of 4 heads (with their landmark files) and a corrupt scan beside it."""
    folder = tmp_path_factory.mktemp("heads")
    manifest = write_synthetic_dataset(folder, flame_template, facescape_texture,
                                       landmark_embedding, SEEDS,
                                       target_vertices=SMALL_TARGET_VERTICES)
    corrupt = folder / "corrupt.obj"
    corrupt.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
    return manifest, corrupt


def _main(argv: list[str]) -> int:
    """``reflame ARGV`` (adding the batch entry point where this checkout is not installed)."""
    eps = cli.entry_points(group="reflame.commands")
    if "batch" not in {e.name for e in eps}:
        extra = EntryPoint("batch", "reflame_core.batch.cli:add_parser", "reflame.commands")
        original = cli.entry_points
        cli.entry_points = lambda group: [*original(group=group), extra]
        try:
            return cli.main(argv)
        finally:
            cli.entry_points = original
    return cli.main(argv)


def _args(dataset, out, flame_dir, *more):
    manifest, corrupt = dataset
    sets = [a for s in TINY for a in ("--set", s)]
    return ["batch", str(manifest), str(corrupt), "--out", str(out), "--flame-dir",
            str(flame_dir), "--preset", "fast", "--device", "cpu", "--workers", "2", "--quiet",
            *sets, *more]


def test_batch_fits_isolates_the_failure_summarises_and_resumes(dataset, flame_dir, tmp_path,
                                                                  capsys):
    out = tmp_path / "out"
    assert _main(_args(dataset, out, flame_dir)) == 1  # one scan failed
    err = capsys.readouterr().err
    assert "corrupt: FAILED:" in err and "corrupt.obj" in err
    names = [f"head_{s:04d}__scan" for s in SEEDS]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["total"], summary["done"], summary["failed"], summary["skipped"]) == \
        (5, 4, 1, 0)
    rows = {r["name"]: r for r in summary["scans"]}
    assert set(rows) == {*names, "corrupt"}
    bad = rows["corrupt"]
    assert bad["status"] == "failed" and "corrupt.obj" in bad["error"] and bad["out_dir"] == ""
    assert "\n" not in bad["error"]
    for name in names:
        row = rows[name]
        assert row["status"] == "done" and row["seconds"] > 0 and row["attempts"] == 1
        report = json.loads((out / name / "report.json").read_text())
        assert report["status"] == "done" and len(report["batch"]["job_hash"]) == 64
        # The summary's numbers are the fit's own, and the fits are real fits.
        assert row["fit_to_scan_mean"] == report["distances_scan_units"]["fit_to_scan_mean"]
        assert row["landmark_outliers"] == len(report["landmark_outliers"])
        assert row["warnings"] == report["warnings"]
        assert 0 < row["fit_to_scan_mean_relative"] < 0.05
        assert report["stages"]["coarse"]["iterations"] == 6
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 6 and csv_lines[0].startswith("name,scan,status,seconds")
    assert not (out / "corrupt").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left
    stamps = {n: (out / n / "fit.obj").stat().st_mtime_ns for n in names}

    # Again: the 4 finished scans are skipped (their files untouched), the corrupt one is
    # tried again and fails again.
    assert _main(_args(dataset, out, flame_dir)) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 4, 1)
    assert {n: (out / n / "fit.obj").stat().st_mtime_ns for n in names} == stamps
    skipped = {r["name"]: r for r in summary["scans"]}[names[0]]
    assert skipped["fit_to_scan_mean"] == rows[names[0]]["fit_to_scan_mean"]

    # A changed setting makes every scan's hash differ: all are fitted again; the old
    # folders are kept as backups.
    assert _main(_args(dataset, out, flame_dir, "--set", "stages.refine.steps=2")) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (4, 0, 1)
    assert len(list(out.glob(f"{names[0]}.*.bak"))) == 1


def test_a_batch_stopped_midway_resumes_where_it_stopped(dataset, flame_dir, tmp_path, capsys):
    from reflame_core.batch.jobhash import is_complete, read_report

    out = tmp_path / "out"
    manifest, _ = dataset
    args = [a for a in _args(dataset, out, flame_dir) if a != str(dataset[1])]
    assert args.count(str(manifest)) == 1
    # One worker: when the first scan lands, three are still to come, however loaded the
    # machine (with two, both of the second round could finish before the signal lands).
    args[args.index("--workers") + 1] = "1"

    def stop_after_the_first_scan():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.is_dir() and any(p.name.startswith("head_") for p in out.iterdir()):
                os.kill(os.getpid(), signal.SIGTERM)  # as a job scheduler's timeout does
                return
            time.sleep(0.05)

    stopper = threading.Thread(target=stop_after_the_first_scan)
    stopper.start()
    assert _main(args) == 143
    stopper.join()
    summary = json.loads((out / "summary.json").read_text())
    statuses = [r["status"] for r in summary["scans"]]
    assert summary["total"] == 4 and statuses.count("done") >= 1
    assert set(statuses) <= {"done", "interrupted"} and "interrupted" in statuses
    # Every folder that looks like a scan's is a complete fit; nothing else is visible.
    visible = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for folder in visible:
        report = read_report(folder)
        assert is_complete(folder, report["batch"]["job_hash"])
    done_before = {r["name"] for r in summary["scans"] if r["status"] == "done"}
    assert {p.name for p in visible} == done_before
    capsys.readouterr()

    assert _main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["name"]: r["status"] for r in summary["scans"]}
    assert {n for n, st in rows.items() if st == "skipped"} == done_before
    assert summary["done"] == 4 - len(done_before) and summary["failed"] == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # staging cleaned up


def test_bad_inputs_exit_2_before_any_fit(tmp_path, flame_dir, capsys):
    out = tmp_path / "out"
    assert _main(["batch", str(tmp_path / "nothing"), "--out", str(out),
                  "--flame-dir", str(flame_dir)]) == 2
    assert "nothing: no such file or folder" in capsys.readouterr().err
    (tmp_path / "scan.obj").write_text("v 0 0 0\n")
    assert _main(["batch", str(tmp_path / "scan.obj"), "--out", str(out), "--flame-dir",
                  str(flame_dir), "--set", "stages.coarse.steps=-5"]) == 2
    assert "stages.coarse.steps" in capsys.readouterr().err
    assert not out.exists()


def test_a_worker_killed_mid_batch_does_not_stop_it(dataset, flame_dir, tmp_path):
    from distributed import Client

    from reflame_core.batch.cluster import local_cluster, worker_envs

    out = tmp_path / "out"
    manifest, _ = dataset
    cluster = local_cluster(worker_envs("cpu", 2), dashboard=False)
    client = Client(cluster)
    try:
        opts = BatchOptions([str(manifest)], out, preset="fast", overrides=TINY,
                            flame_dir=flame_dir, scheduler=cluster.scheduler_address,
                            quiet=True, retries=1)
        result: dict = {}
        runner = threading.Thread(target=lambda: result.update(run_batch(opts, log=print)))
        runner.start()
        # Wait until a fit is under way (its staging folder exists), then kill a worker.
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(p.name.startswith(".") for p in out.iterdir())):
            assert time.monotonic() < deadline and runner.is_alive(), "no fit started"
            time.sleep(0.1)
        pids = client.run(os.getpid)
        assert len(pids) == 2
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        runner.join(timeout=300)
        assert not runner.is_alive()
        assert (result["done"], result["failed"]) == (4, 0)
        assert victim not in client.run(os.getpid).values()  # the Nanny started a new one
        for row in result["scans"]:
            assert np.isfinite(row["fit_to_scan_mean"])
            assert (out / row["name"] / "fit.obj").is_file()
    finally:
        client.close()
        cluster.close()
