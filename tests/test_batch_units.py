"""``reflame batch``'s parts without a cluster: inputs and manifests, output names, the job
hash and resuming, the atomic output folder, retries, one job on a corrupt scan; and the
public API's lazy top-level import."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from reflame_core.batch.folder import publish, remove_stale_staging, staging_dir
from reflame_core.batch.inputs import BatchJob, collect_jobs
from reflame_core.batch.jobhash import is_complete, job_hash
from reflame_core.batch.naming import output_names
from reflame_core.batch.schedule import BatchOptions, Planned, _retry, plan
from reflame_core.batch.task import JobOutcome, JobSpec, run_job
from reflame_core.errors import InputFileError
from reflame_core.fit.config import FitConfig


def _touch(path, text="v 0 0 0\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "data"
    for rel in ("a/x.obj", "a/x.ply", "b/c/y.GLB", "z.gltf", "notes.md", ".hidden/h.obj"):
        _touch(root / rel)
    _touch(root / "a" / "lm.json", "{}")
    return root


def test_folders_are_searched_recursively_for_scans_only(tree):
    jobs = collect_jobs([tree])
    rel = sorted(str(j.scan.relative_to(tree)) for j in jobs)
    assert rel == ["a/x.obj", "a/x.ply", "b/c/y.GLB", "z.gltf"]
    assert {j.root for j in jobs} == {tree.resolve()}


def test_globs_files_and_duplicates(tree):
    jobs = collect_jobs([str(tree / "a" / "*.obj"), tree / "a" / "x.obj", str(tree / "**/*.ply")])
    assert [j.scan.name for j in jobs] == ["x.obj", "x.ply"]  # x.obj listed once
    with pytest.raises(InputFileError, match="matches no scan"):
        collect_jobs([str(tree / "*.nothing")])
    with pytest.raises(InputFileError, match="no such file"):
        collect_jobs([tree / "missing.obj"])
    with pytest.raises(InputFileError, match="notes.md"):
        collect_jobs([tree / "notes.md"])


def test_csv_manifest_gives_landmarks_and_settings_per_scan(tree):
    m = _touch(tree / "list.csv", "scan,landmarks,set\n"
               "a/x.obj,a/lm.json,stages.coarse.steps=7; cameras.num_views=3\n"
               "\n"
               "z.gltf,,\n")
    jobs = collect_jobs([m])
    assert [j.scan for j in jobs] == [(tree / "a/x.obj").resolve(), (tree / "z.gltf").resolve()]
    assert jobs[0].landmarks == (tree / "a/lm.json").resolve() and jobs[1].landmarks is None
    assert jobs[0].overrides == ("stages.coarse.steps=7", "cameras.num_views=3")
    assert jobs[0].source == f"{m}:2"


def test_txt_manifest_reads_like_the_command_line(tree):
    m = _touch(tree / "list.txt", "# my scans\n"
               "a/x.obj --landmarks a/lm.json --set stages.refine.steps=3\n"
               "'b/c/y.GLB'  # trailing comment\n")
    jobs = collect_jobs([m])
    assert jobs[0].landmarks == (tree / "a/lm.json").resolve()
    assert jobs[0].overrides == ("stages.refine.steps=3",)
    assert jobs[1].scan.name == "y.GLB" and jobs[1].overrides == ()


@pytest.mark.parametrize("name, text, problem", [
    ("bad.csv", "path,landmarks\nx.obj,\n", "'scan' column"),
    ("bad.csv", "scan,extra\na/x.obj,1\n", "unknown column"),
    ("bad.csv", "scan,landmarks\na/x.obj,missing.json\n", "bad.csv:2: landmark file"),
    ("bad.csv", "scan\na/nothere.obj\n", "bad.csv:2: scan a/nothere.obj not found"),
    ("bad.csv", "scan,set\na/x.obj,stages.coarse.steps\n", "must look like"),
    ("bad.txt", "a/x.obj --landmarks\n", "bad.txt:1"),
    ("bad.txt", "notes.md\n", "not a scan"),
    ("bad.txt", "# nothing\n", "lists no scan"),
])
def test_a_bad_manifest_names_the_file_line_and_problem(tree, name, text, problem):
    with pytest.raises(InputFileError, match=problem):
        collect_jobs([_touch(tree / name, text)])


def test_a_bad_setting_for_one_scan_fails_before_any_fit(tree, tmp_path):
    m = _touch(tree / "list.csv", "scan,set\na/x.obj,stages.coarse.stepz=3\n")
    with pytest.raises(InputFileError, match=r"list.csv:2.*stepz"):
        plan(BatchOptions([str(m)], tmp_path / "out"))


def test_the_batch_never_takes_its_own_outputs_as_scans(tree):
    (tree / "fits" / "a__x.obj").mkdir(parents=True)
    _touch(tree / "fits" / "a__x.obj" / "fit.obj")
    planned = plan(BatchOptions([str(tree)], tree / "fits"))
    assert [p.name for p in planned] == ["a__x.obj", "a__x.ply", "b__c__y", "z"]
    with pytest.raises(InputFileError, match="inside the output folder"):
        plan(BatchOptions([str(tree / "fits")], tree / "fits"))


def test_output_names_are_stable_and_distinct(tree, tmp_path):
    jobs = collect_jobs([tree])
    names = output_names(jobs)
    assert names == ["a__x.obj", "a__x.ply", "b__c__y", "z"]
    # The same scan has the same name whatever else is in the batch (unless it collides).
    assert output_names([j for j in jobs if j.scan.name == "y.GLB"]) == ["b__c__y"]
    other = _touch(tmp_path / "other" / "z.gltf")
    both = output_names([*jobs, BatchJob(other.resolve(), other.parent.resolve())])
    assert len(set(both)) == 5 and both[3].startswith("z.gltf-") and both[4].startswith("z.gltf-")


def test_job_hash_follows_inputs_and_config(tree):
    scan = (tree / "a" / "x.obj").resolve()
    job = BatchJob(scan, tree, landmarks=(tree / "a/lm.json").resolve())
    cfg = FitConfig.preset("fast")
    h = job_hash(job, cfg)
    assert h == job_hash(job, FitConfig.preset("fast"))
    assert h != job_hash(job, cfg.with_overrides(["stages.coarse.steps=3"]))
    assert h != job_hash(BatchJob(scan, tree), cfg)
    _touch(tree / "a" / "x.mtl", "newmtl m\n")  # a sidecar (MTL, texture) appears
    h2 = job_hash(job, cfg)
    assert h2 != h
    st = scan.stat()
    os.utime(scan, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the scan changed
    assert job_hash(job, cfg) != h2


def _finished_folder(folder, h, status="done"):
    import json

    for n in ("fit.obj", "fit_canonical.obj", "landmarks.json", "losses.csv", "config.toml",
              "transform.json"):
        _touch(folder / n, "x")
    (folder / "report.json").write_text(json.dumps({"status": status,
                                                    "batch": {"job_hash": h}}))


def test_only_a_finished_fit_of_the_same_job_is_complete(tmp_path):
    f = tmp_path / "scan"
    assert not is_complete(f, "abc")
    _finished_folder(f, "abc")
    assert is_complete(f, "abc") and not is_complete(f, "other")
    (f / "losses.csv").unlink()
    assert not is_complete(f, "abc")
    _finished_folder(f, "abc", status="diverged")
    assert not is_complete(f, "abc")
    (f / "report.json").write_text("{not json")
    assert not is_complete(f, "abc")


def test_the_output_folder_appears_only_when_published(tmp_path):
    out = tmp_path / "out"
    stage = staging_dir(out, "scan")
    assert stage.parent == out and stage.name.startswith(".scan.tmp-")
    assert not (out / "scan").exists()
    _finished_folder(stage, "h")
    assert not is_complete(out / "scan", "h")  # a half-done batch shows nothing
    assert stage.stat().st_mode & 0o077  # not mkdtemp's private 0700
    assert publish(stage, out / "scan") is None
    assert is_complete(out / "scan", "h") and not stage.exists()
    # Replacing it keeps the old folder as a timestamped backup.
    again = staging_dir(out, "scan")
    _finished_folder(again, "h2")
    backup = publish(again, out / "scan")
    assert backup is not None and backup.name.startswith("scan.") and backup.name.endswith(".bak")
    assert is_complete(backup, "h") and is_complete(out / "scan", "h2")
    # A staging folder left by a killed batch is removed at the next start; nothing else is.
    left = staging_dir(out, "other")
    assert remove_stale_staging(out) == [left] and not left.exists()
    assert (out / "scan").is_dir() and backup.is_dir()


def _spec(**kw) -> JobSpec:
    base = dict(name="s", scan="/x/s.obj", landmarks=None, out_root="/tmp/none",
                config=FitConfig.preset("default"), job_hash="h", flame_dir="/f",
                device="cuda")
    return JobSpec(**{**base, **kw})


def test_out_of_memory_retries_with_preset_fast_then_on_the_cpu():
    opts = BatchOptions(["x"], "out", retries=2)
    p = Planned(BatchJob("/x/s.obj", "/x", overrides=("stages.refine.steps=9",)), "s",
                FitConfig.preset("default"), "h")
    oom = JobOutcome("s", "failed", 1.0, error="OutOfMemoryError: CUDA out of memory",
                     out_of_memory=True, device="cuda")
    first = _retry(oom, _spec(), p, opts)
    assert first.attempt == 2 and first.fallback == "preset fast after out of memory"
    assert first.config.get("cameras.num_views") == FitConfig.preset("fast").get(
        "cameras.num_views")
    assert first.config.get("stages.refine.steps") == 9  # the scan's own settings stay
    assert first.job_hash == "h"  # done by a fallback still counts as this job done
    second = _retry(oom, first, p, opts)
    assert second.device == "cpu" and second.attempt == 3 and "on the CPU" in second.fallback
    assert _retry(oom, second, p, opts) is None  # no retries left
    assert _retry(oom, _spec(), p, BatchOptions(["x"], "out", retries=0)) is None
    corrupt = JobOutcome("s", "failed", 0.0, error="ScanError: bad", device="cuda")
    assert _retry(corrupt, _spec(), p, opts) is None
    died = JobOutcome("s", "failed", 0.0, error="KilledWorker: ... all those workers died")
    assert _retry(died, _spec(), p, opts) is None  # Dask has re-run it already


def test_a_job_on_a_corrupt_scan_fails_in_one_line_and_leaves_nothing(tmp_path, flame_dir):
    bad = _touch(tmp_path / "bad.obj", "v 0 0 nan\nf 1 2 3\n")
    out = tmp_path / "out"
    outcome = run_job(_spec(scan=str(bad), out_root=str(out), flame_dir=str(flame_dir),
                            device="cpu"))
    assert outcome.status == "failed" and not outcome.out_of_memory
    assert "bad.obj" in outcome.error and "\n" not in outcome.error
    assert list(out.iterdir()) == []


def test_a_job_out_of_memory_says_so(tmp_path, flame_dir, monkeypatch):
    import torch

    from reflame_core.fit import run as fit_run

    def oom(*_a, **_k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(fit_run, "fit_scan", oom)
    outcome = run_job(_spec(scan=str(tmp_path / "s.obj"), out_root=str(tmp_path / "o"),
                            flame_dir=str(flame_dir), device="cpu"))
    assert outcome.out_of_memory and "out of memory" in outcome.error
    assert list((tmp_path / "o").iterdir()) == []


def test_import_reflame_core_is_cheap_and_exports_the_api():
    code = ("import sys, reflame_core as rf; assert 'torch' not in sys.modules; "
            "assert callable(rf.fit_scan) and rf.FitConfig.preset('fast').get("
            "'stages.coarse.steps') == 150; assert rf.load_scan.__module__ == "
            "'reflame_core.io.scan'; print('ok')")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert res.returncode == 0, res.stderr
    assert time.perf_counter() - t0 < 60
    assert FitConfig.preset("seed").data == FitConfig.load(preset="seed").data
