"""Work on a Dask cluster: a LocalCluster of worker processes on loopback, as a real cluster's workers would run it."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ser_lib import features, workers

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402  (installed with distributed)


@pytest.fixture(scope="module")
def cluster():
    # Past one death a job is reported, not retried again (the default is 3): keeps the test short. A worker holds
    # only the job it runs (no queue of others), so a death counts against the job that caused it alone.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1, "distributed.scheduler.worker-saturation": 1.0}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None) as local:
            yield local


def _tasks_done(cluster, prefix: str) -> int:
    """How many tasks of a kind (their keys' prefix) the cluster's scheduler has seen finish."""
    counts = cluster.scheduler.task_prefixes.get(prefix)
    return 0 if counts is None else counts.state_counts["memory"]


def test_extract_many_on_a_cluster_equals_local_extraction_and_runs_there(cluster, write_wav, tmp_path):
    paths = [write_wav(f"c{i}.wav", f0=110.0 + 30 * i, seed=i) for i in range(4)]
    broken = tmp_path / "broken.wav"
    broken.write_text("no audio")
    table = pd.DataFrame({"path": [*paths[:2], broken, *paths[2:]], "emotion": list("abcde")})
    options = dict(cache_dir=tmp_path / "cache", progress=False, return_skipped=True, warn=False,
                   augmentations=("speed0.9", "white noise 15 dB"))
    before = _tasks_done(cluster, "ser_lib.extract_many")

    remote, remote_skipped = features.extract_many(table, scheduler=cluster.scheduler_address, **options)
    local, local_skipped = features.extract_many(table, n_jobs=1, **{**options, "cache_dir": None})

    assert _tasks_done(cluster, "ser_lib.extract_many") - before == len(table)  # one task a clip, on the cluster
    pd.testing.assert_frame_equal(remote[["path", "emotion", "augmentation"]], local[["path", "emotion", "augmentation"]])
    np.testing.assert_allclose(features.feature_matrix(remote), features.feature_matrix(local), rtol=1e-5, atol=1e-6)
    assert remote_skipped.equals(local_skipped) and remote_skipped["path"].tolist() == [str(broken)]
    # The workers filled the cache: a local rerun reads it.
    cached = features.extract_many(table, n_jobs=1, **options)[0]
    np.testing.assert_array_equal(features.feature_matrix(cached), features.feature_matrix(remote))


class _DieOnJobs(distributed.WorkerPlugin):
    """Kills the worker process that starts one of the given jobs: always, or once (a marker file says it did)."""

    def __init__(self, always: str, once: str, marker: str):
        self.always, self.once, self.marker = always, once, marker

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing":
            return
        if key.endswith(self.always) or (key.endswith(self.once) and not os.path.exists(self.marker)):
            Path(self.marker).touch()
            os._exit(1)


def test_a_job_whose_worker_dies_is_retried_or_reported_and_the_rest_goes_on(cluster, write_wav, tmp_path):
    paths = [str(write_wav(f"c{i}.wav", f0=120.0 + 20 * i, seed=i)) for i in range(4)]
    jobs = [(path, ["none"]) for path in paths]
    with distributed.Client(cluster.scheduler_address) as client:
        client.register_plugin(_DieOnJobs(always="-1", once="-2", marker=str(tmp_path / "died")), name="die")
        try:
            results = dict(workers.run_jobs(features._extract_clip, jobs, scheduler=cluster.scheduler_address))
        finally:
            client.unregister_worker_plugin("die")

    assert sorted(results) == [0, 1, 2, 3]
    assert isinstance(results[1], workers.LostJob) and "every Dask worker that ran it died" in results[1].reason
    for index in (0, 2, 3):  # the job that killed its worker once ran again elsewhere
        (row, measures, reason), = results[index]
        np.testing.assert_allclose(row, features.extract_features(paths[index]), rtol=1e-5, atol=1e-6)


def test_extract_many_records_the_files_of_a_lost_job_and_goes_on(monkeypatch, write_wav):
    paths = [str(write_wav(f"c{i}.wav", seed=i)) for i in range(3)]

    def lost_second(function, jobs, **options):
        for index, job in enumerate(jobs):
            yield index, workers.LostJob("every Dask worker that ran it died (test)") if index == 1 else function(*job)

    monkeypatch.setattr(features, "run_jobs", lost_second)
    table = pd.DataFrame({"path": paths})
    result, skipped = features.extract_many(table, cache_dir=None, progress=False, return_skipped=True, warn=False,
                                            augmentations=("speed0.9",), scheduler="tcp://unused:8786")
    assert result["path"].tolist() == [paths[0], paths[2]] * 2
    assert skipped["path"].tolist() == [paths[1]] and "worker that ran it died" in skipped["reason"].iloc[0]


def test_without_dask_distributed_the_cluster_option_says_what_to_install(monkeypatch, write_wav):
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'ser_lib\[cluster\]'"):
        features.extract_many(pd.DataFrame({"path": [write_wav()]}), cache_dir=None, progress=False,
                              scheduler="tcp://127.0.0.1:8786")


def test_ser_predict_on_a_cluster_gives_the_local_table(cluster, demo_run, tmp_path, write_wav):
    from ser_lib.cli import main

    folder = tmp_path / "clips"
    for i in range(3):
        write_wav(f"clips/c{i}.wav", f0=120.0 + 40 * i, seed=i)
    (folder / "broken.wav").write_text("no audio")
    before = _tasks_done(cluster, "ser_lib.predict_many")
    tables = {}
    for where, options in (("cluster", ["--scheduler", cluster.scheduler_address]), ("here", ["--workers", "1"])):
        tables[where] = tmp_path / f"{where}.csv"
        assert main(["predict", str(folder), "--artifacts", str(demo_run[2]), "--csv", str(tables[where]), "--quiet",
                     *options]) == 1  # the broken file
    assert _tasks_done(cluster, "ser_lib.predict_many") > before
    cluster_table, local_table = (pd.read_csv(tables[where]) for where in ("cluster", "here"))
    pd.testing.assert_frame_equal(cluster_table, local_table, rtol=1e-5)
    assert cluster_table["error"].notna().sum() == 1
