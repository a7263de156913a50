"""The batch driver: inputs -> jobs, skip what is done, run the rest on Dask, retry what may
pass with less memory, write the summary.

Retries (``retries`` per scan): a fit that ran out of memory is tried again with the ``fast``
preset, then on the CPU. Each retry is said on stderr and in the summary. A scan whose worker
died is given to another worker by Dask itself (up to its ``allowed-failures``).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from reflame_core.batch.folder import remove_stale_staging
from reflame_core.batch.inputs import BatchJob, collect_jobs
from reflame_core.batch.jobhash import FolderIndex, is_complete, job_hash, read_report
from reflame_core.batch.naming import output_names
from reflame_core.batch.summary import SummaryRow, counts, write_summary
from reflame_core.batch.task import JobOutcome, JobSpec, one_line
from reflame_core.errors import ConfigError, InputFileError
from reflame_core.fit.config import FitConfig


@dataclass
class BatchOptions:
    """``reflame batch``'s settings (see its ``--help``)."""

    inputs: list[str]
    out: Path
    config_path: Path | None = None
    preset: str = "default"
    overrides: list[str] = field(default_factory=list)
    flame_dir: str | Path | None = None
    device: str = "auto"
    workers: int | None = None
    scheduler: str | None = None
    force: bool = False
    retries: int = 1
    quiet: bool = False


@dataclass
class Planned:
    """A job with its output name, its configuration and that configuration's hash."""

    job: BatchJob
    name: str
    config: FitConfig
    job_hash: str


def plan(opts: BatchOptions) -> list[Planned]:
    """Every job with its name and config; a bad setting (the batch's, or a manifest's for
    one scan) fails here, before any fit, naming where it came from."""
    base = FitConfig.load(opts.config_path, preset=opts.preset, overrides=opts.overrides)
    out_dir = Path(opts.out).resolve()
    # Never the batch's own results (fit.obj...), e.g. with --out inside a scanned folder.
    jobs = [j for j in collect_jobs(opts.inputs) if out_dir not in j.scan.parents]
    if not jobs:
        raise InputFileError(opts.out, "every scan the inputs name is inside the output "
                             "folder")
    index = FolderIndex()
    out = []
    for job, name in zip(jobs, output_names(jobs), strict=True):
        try:
            cfg = base.with_overrides(list(job.overrides)) if job.overrides else base
        except ConfigError as exc:
            raise InputFileError(job.source, str(exc)) from None
        out.append(Planned(job, name, cfg, job_hash(job, cfg, index)))
    return out


def run_batch(opts: BatchOptions, log: Callable[[str], None] | None = None) -> dict:
    """Run the batch; returns the summary document (also written as summary.json)."""
    from reflame_core.assets.locate import find_flame_dir
    from reflame_core.io.output_folder import check_output_dir

    say = log or (lambda m: print(m, file=sys.stderr))
    start = time.perf_counter()
    out = check_output_dir(opts.out).resolve()
    planned = plan(opts)
    flame_dir = str(find_flame_dir(opts.flame_dir).resolve())
    out.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_staging(out):
        say(f"removed {stale.name}, left by an interrupted batch")
    rows: dict[str, SummaryRow] = {}
    todo: list[Planned] = []
    for p in planned:
        if not opts.force and is_complete(out / p.name, p.job_hash):
            row = SummaryRow(p.name, str(p.job.scan), "skipped", out_dir=str(out / p.name))
            row.add_report(read_report(out / p.name))
            rows[p.name] = row
        else:
            todo.append(p)
    say(f"batch: {len(planned)} scans, {len(planned) - len(todo)} already done (skipped), "
        f"{len(todo)} to fit")
    finished: list[SummaryRow] = []
    try:
        if todo:
            _run_on_dask(todo, opts, out, flame_dir, say, finished)
    except KeyboardInterrupt as exc:
        # What finished stays finished; the summary says which scans the stop cut short.
        from reflame_core.interrupts import signal_name_of

        rows.update({r.name: r for r in finished})
        for p in todo:
            if p.name in rows:
                continue
            # A worker may have published a scan the driver had not heard of yet.
            row = rows[p.name] = SummaryRow(p.name, str(p.job.scan), "interrupted",
                                            error=f"interrupted by {signal_name_of(exc)}")
            if is_complete(out / p.name, p.job_hash):
                row.status, row.error, row.out_dir = "done", "", str(out / p.name)
                row.add_report(read_report(out / p.name))
        ordered = [rows[p.name] for p in planned]
        write_summary(out, ordered, seconds=time.perf_counter() - start)
        c = counts(ordered)
        say(f"batch: interrupted: {c['done']} done, {c['skipped']} skipped, {c['failed']} "
            f"failed, {c.get('interrupted', 0)} not fitted; summary in {out / 'summary.csv'}")
        raise
    rows.update({r.name: r for r in finished})
    ordered = [rows[p.name] for p in planned]
    doc = write_summary(out, ordered, seconds=time.perf_counter() - start)
    c = counts(ordered)
    warned = sum(1 for r in ordered if r.warnings)
    say(f"batch: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed"
        + (f", {warned} with warnings (see the summary's warnings column)" if warned else "")
        + f"; summary in {out / 'summary.csv'}")
    return doc


def _client(opts: BatchOptions):
    """A Dask client on ``opts.scheduler``, or on a new local cluster (closed with it)."""
    from distributed import Client

    from reflame_core.batch.cluster import local_cluster, worker_envs

    if opts.scheduler:
        return Client(opts.scheduler), None
    cluster = local_cluster(worker_envs(opts.device, opts.workers))
    return Client(cluster), cluster


def _run_on_dask(todo: list[Planned], opts: BatchOptions, out: Path, flame_dir: str,
                 say: Callable[[str], None], rows: list[SummaryRow]) -> None:
    """Fit ``todo``; appends each scan's row to ``rows`` as it finishes."""
    from reflame_core.batch.cluster import ReflameWorkerPlugin, has_bokeh
    from reflame_core.batch.task import run_job

    client, cluster = _client(opts)
    try:
        client.register_plugin(ReflameWorkerPlugin(flame_dir))
        info = client.scheduler_info()["workers"]
        workers, threads = len(info), sum(w.get("nthreads", 1) for w in info.values())
        where = opts.scheduler or "a local cluster"
        # Dask's dashboard needs bokeh (pip install bokeh) where the scheduler runs.
        has_dashboard = cluster is None or has_bokeh()
        link = f", dashboard {client.dashboard_link}" if has_dashboard else ""
        say(f"batch: {workers} worker(s) on {where}{link}")
        by_name = {p.name: p for p in todo}
        futures = {}

        def submit(spec: JobSpec):
            key = f"reflame-fit-{spec.name}-{spec.attempt}-{uuid.uuid4().hex[:8]}"
            fut = client.submit(run_job, spec, key=key, pure=False)
            futures[fut] = spec
            return fut

        for p in todo:
            submit(JobSpec(p.name, str(p.job.scan), str(p.job.landmarks or "") or None,
                           str(out), p.config, p.job_hash, flame_dir, opts.device))
        bar = _ProgressBar(len(todo), disable=opts.quiet)
        try:
            _collect(client, futures, submit, by_name, opts, out, bar, threads, rows)
        finally:
            bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _collect(client, futures: dict, submit, by_name: dict[str, Planned], opts: BatchOptions,
             out: Path, bar: _ProgressBar, threads: int, rows: list[SummaryRow]) -> None:
    """Wait for the fits, resubmitting the ones to retry, until every scan has its row."""
    from distributed import wait

    pending = set(futures)
    while pending:
        try:
            done, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        for fut in done:
            spec = futures.pop(fut)
            outcome = _outcome(fut, spec)
            retry = _retry(outcome, spec, by_name[spec.name], opts) \
                if outcome.status == "failed" else None
            if retry is not None:
                bar.write(f"{spec.name}: {outcome.error}; retrying "
                          f"({retry.fallback or 'as before'})")
                pending.add(submit(retry))
                continue
            row = _row(outcome, spec, out)
            rows.append(row)
            bar.finished(row)
            if row.status == "failed":
                bar.write(f"{row.name}: FAILED: {row.error}")
        bar.in_flight(min(threads, _in_flight(client, futures)))


def _outcome(fut, spec: JobSpec) -> JobOutcome:
    """The job's outcome. A task Dask could not run (KilledWorker: every worker that ran
    it died, Dask having already given it to ``distributed.scheduler.allowed-failures``
    workers) fails with that reason; retrying it again would only kill more workers."""
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - KilledWorker, a lost scheduler...
        return JobOutcome(spec.name, "failed", 0.0, error=one_line(exc),
                          device=spec.device,
                          attempt=spec.attempt, fallback=spec.fallback)


def _retry(outcome: JobOutcome, spec: JobSpec, p: Planned, opts: BatchOptions
           ) -> JobSpec | None:
    """The next attempt at a job that ran out of memory: with the ``fast`` preset (unless
    in use), then on the CPU; None when it failed otherwise or has no retries left."""
    if not outcome.out_of_memory or spec.attempt > opts.retries:
        return None
    nxt = replace(spec, attempt=spec.attempt + 1)
    said = [spec.fallback] if spec.fallback else []
    if opts.preset != "fast" and "preset fast" not in (spec.fallback or ""):
        fast = FitConfig.load(opts.config_path, preset="fast", overrides=opts.overrides)
        fast = fast.with_overrides(list(p.job.overrides)) if p.job.overrides else fast
        return replace(nxt, config=fast,
                       fallback=", ".join([*said, "preset fast after out of memory"]))
    if outcome.device != "cpu" and spec.device != "cpu":
        return replace(nxt, device="cpu",
                       fallback=", ".join([*said, "on the CPU after out of memory"]))
    return None


def _row(outcome: JobOutcome, spec: JobSpec, out: Path) -> SummaryRow:
    row = SummaryRow(spec.name, spec.scan, outcome.status, seconds=outcome.seconds,
                     attempts=spec.attempt, device=outcome.device, note=spec.fallback or "",
                     error=outcome.error or "")
    if outcome.report is not None:
        row.out_dir = str(out / spec.name)
        row.add_report(outcome.report)
    return row


def _in_flight(client, futures: dict) -> int:
    """How many of this batch's fits a worker is running now."""
    try:
        processing = client.processing()
    except Exception:  # noqa: BLE001 - only the progress bar's number
        return 0
    keys = {f.key for f in futures}
    return sum(1 for tasks in processing.values() for k in tasks if k in keys)


class _ProgressBar:
    """One bar for the batch: scans finished of all, with done / failed / in flight, ETA."""

    def __init__(self, total: int, *, disable: bool) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=total, desc="batch", unit="scan", disable=disable,
                        file=sys.stderr, dynamic_ncols=True)
        self.done = self.failed = self.flying = 0
        self._post()

    def finished(self, row: SummaryRow) -> None:
        if row.status == "done":
            self.done += 1
        else:
            self.failed += 1
        self.bar.update(1)
        self._post()

    def in_flight(self, n: int) -> None:
        if n != self.flying:
            self.flying = n
            self._post()

    def _post(self) -> None:
        self.bar.set_postfix(done=self.done, failed=self.failed, in_flight=self.flying)

    def write(self, line: str) -> None:
        self._tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
