"""Where many files' work runs: in this process, in worker processes here (joblib), or on a Dask cluster.

Feature extraction (:func:`ser_lib.extract_many`) and batch prediction (:func:`ser_lib.predict_many`)
hand their jobs to :func:`run_jobs`, which yields each job's result with its index. On a cluster
(``scheduler=`` a ``dask.distributed`` scheduler's address), the workers must reach the same audio
paths and have the same ser_lib installed; a job whose worker dies is run again on another worker
(the scheduler's ``distributed.scheduler.allowed-failures``, 3 by default) and, past that, comes back
as a :class:`LostJob` saying so: the caller records its files with the reason, nothing is lost silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple


class LostJob(NamedTuple):
    """A job no worker could finish (each one that ran it died)."""

    reason: str


def run_jobs(function: Callable, jobs: Sequence[tuple], *, n_jobs: int = -1, scheduler: str | None = None,
             name: str = "job") -> Iterator[tuple[int, object]]:
    """``(index, function(*jobs[index]))`` for every job: here in order, on a cluster as they finish.

    Parameters
    ----------
    function : callable
        A module-level function (workers import it by name).
    jobs : sequence of tuple
        Each job's positional arguments.
    n_jobs : int
        Without ``scheduler``: worker processes here (joblib; 1 runs in this process, -1 every core).
    scheduler : str, optional
        A Dask scheduler's address (``"tcp://host:8786"``): the jobs run on its workers.
    name : str
        Names the jobs on the cluster's dashboard.

    Yields
    ------
    index, result : int, object
        On a cluster, a job whose workers all died yields a :class:`LostJob`.
    """
    if scheduler is not None:
        yield from _run_on_cluster(function, jobs, scheduler, name)
    elif n_jobs == 1:
        yield from enumerate(function(*job) for job in jobs)
    else:
        from joblib import Parallel, delayed

        runner = Parallel(n_jobs=n_jobs, return_as="generator")
        yield from enumerate(runner(delayed(function)(*job) for job in jobs))


def _run_on_cluster(function: Callable, jobs: Sequence[tuple], scheduler: str, name: str) -> Iterator[tuple[int, object]]:
    try:
        from distributed import Client, KilledWorker, as_completed
    except ImportError as error:
        raise ModuleNotFoundError(
            "Running on a Dask cluster needs dask.distributed: pip install 'ser_lib[cluster]'.", name="distributed"
        ) from error
    if not jobs:
        return
    run = uuid.uuid4().hex[:8]
    with Client(scheduler, set_as_default=False) as client:
        keys = [f"ser_lib.{name}-{run}-{index}" for index in range(len(jobs))]
        futures = client.map(function, *zip(*jobs), key=keys, pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        for future in as_completed(futures, loop=client.loop):
            try:
                result = future.result()
            except KilledWorker as error:
                result = LostJob(f"every Dask worker that ran it died ({error})")
            yield index[future.key], result
