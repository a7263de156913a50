"""``reflame batch``: fit many scans on a Dask cluster (one worker per GPU, or CPU workers),
resumably, each failure isolated, with a summary.

Modules: ``inputs`` (folders, globs, manifests -> ``BatchJob``), ``naming`` (stable output
folder names), ``jobhash`` (what a finished fit must match to be skipped), ``folder`` (a
scan's output appears only when complete), ``task`` (one fit on a worker), ``cluster``
(local Dask clusters, worker set-up), ``schedule`` (submitting, retries, progress:
``run_batch(BatchOptions)``), ``summary`` (summary.csv / summary.json), ``cli``.
"""
