"""librosa's numba kernels: compiled once under a lock, so concurrent first runs never crash (numba #10128)."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
import time

import numpy as np
import pytest
import soundfile

from conftest import voiced_signal

pytest.importorskip("opensmile")

EXTRACT = textwrap.dedent("""
    import sys
    import numpy as np
    import pandas as pd
    import ser_lib

    paths = sys.argv[1:-1]
    features = ser_lib.extract_many(pd.DataFrame({"path": paths}), recipe="best", n_jobs=2, cache_dir=None, progress=False)
    np.save(sys.argv[-1], features.iloc[:, -7784:].to_numpy())
""")


def _start(script, clips, out, cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    return subprocess.Popen([sys.executable, str(script), *map(str, clips), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


@pytest.mark.slow
def test_first_runs_at_once_and_a_later_reader_do_not_crash(tmp_path):
    """Four processes extract on an empty numba cache: the first, then three more started while it compiles.

    Without the lock, a process started mid-compilation finds some of librosa's gufuncs cached and
    compiles the rest under other ABI tags; two processes' halves of a gufunc's cache can then
    disagree, and whoever loads them crashes. The late ones start at three points of the first one's
    compilation (after 1, 4 and 12 cache files). With the lock removed this test failed 3 runs of 3.
    """
    script = tmp_path / "extract.py"
    script.write_text(EXTRACT)
    clips = []
    for index in range(3):
        clips.append(tmp_path / f"clip{index}.wav")
        soundfile.write(clips[-1], voiced_signal(1.5, f0=120 + 30 * index, seed=index), 22050)
    cache_dir = tmp_path / "numba"
    cache_dir.mkdir()
    processes = {"first": _start(script, clips, tmp_path / "first.npy", cache_dir)}
    deadline = time.monotonic() + 300
    for files_before in (1, 4, 12):
        while (len(list(cache_dir.rglob("*.nbc"))) < files_before and processes["first"].poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.05)
        name = f"after {files_before} files"
        processes[name] = _start(script, clips, tmp_path / f"{name}.npy", cache_dir)
    outcomes = {name: _finish(process) for name, process in processes.items()}
    outcomes["reader"] = _finish(_start(script, clips, tmp_path / "reader.npy", cache_dir))
    for name, (code, output) in outcomes.items():
        assert code == 0, f"the {name} process exited with {code} " \
                          f"({'SIGSEGV' if code == -signal.SIGSEGV else 'error'}):\n{output[-3000:]}"
    results = [np.load(tmp_path / f"{name}.npy") for name in outcomes]
    for features in results[1:]:
        np.testing.assert_array_equal(features, results[0])


POISON = textwrap.dedent("""
    import importlib.util, shutil, subprocess, sys
    from pathlib import Path

    # Two caches of librosa.util's kernels: `good` compiled normally; in `other` localmax is found
    # cached first, so localmin compiles under another ABI tag, as in the race. localmin's two files
    # taken from different caches are what the race leaves behind.
    good, other = Path(sys.argv[1]), Path(sys.argv[2])
    compile_ = [sys.executable, "-c", "import librosa.util.utils"]
    subprocess.run(compile_, env={"NUMBA_CACHE_DIR": str(good), "PATH": ""}, check=True)
    folder = next(good.glob("util_*"))
    (other / folder.name).mkdir(parents=True)
    for path in folder.glob("*_localmax*"):
        shutil.copy(path, other / folder.name)
    subprocess.run(compile_, env={"NUMBA_CACHE_DIR": str(other), "PATH": ""}, check=True)
    for path in (other / folder.name).glob("guf-utils._localmin*"):
        shutil.copy(path, folder)
""")
CALL_LOCALMIN = "import numpy as np, librosa; print(librosa.util.localmin(np.array([3.0, 1.0, 2.0])))"


@pytest.mark.slow
def test_a_broken_cache_is_detected_rebuilt_and_reported(tmp_path, write_wav):
    poisoned, other = tmp_path / "numba", tmp_path / "other"
    subprocess.run([sys.executable, "-c", POISON, str(poisoned), str(other)], check=True, timeout=300)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(poisoned)}
    plain = subprocess.run([sys.executable, "-c", CALL_LOCALMIN], env=env, capture_output=True, timeout=300)
    assert plain.returncode == -signal.SIGSEGV  # the cache is broken as the race leaves it

    clip = write_wav("clip.wav", seconds=1.5)
    script = tmp_path / "extract.py"
    script.write_text(EXTRACT)
    first = subprocess.run([sys.executable, str(script), str(clip), str(tmp_path / "f.npy")], env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "numba's cache of librosa's kernels was broken" in first.stderr and "compiling them again" in first.stderr
    again = subprocess.run([sys.executable, "-c", CALL_LOCALMIN], env=env, capture_output=True, timeout=300)
    assert again.returncode == 0  # repaired for every later process, ser_lib or not


def test_the_lock_and_stamp_live_beside_numbas_cache_of_librosa(tmp_path, monkeypatch):
    from ser_lib import kernels

    monkeypatch.setattr("numba.core.config.CACHE_DIR", str(tmp_path))
    home = kernels.lock_home()
    assert home.parent == tmp_path and home.name.startswith("util_")
    assert home in kernels.cache_dirs()
    (home / "utils._localmin-1052.py311.nbi").write_bytes(b"index")
    (home / "utils._localmin-1052.py311.1.nbc").write_bytes(b"data")
    (home / kernels.STAMP_NAME).write_text("ok")
    (home / "keep.pyc").write_bytes(b"not numba's")
    removed = kernels.remove_compiled()
    assert sorted(p.name for p in removed) == sorted(["utils._localmin-1052.py311.nbi", "utils._localmin-1052.py311.1.nbc",
                                                      kernels.STAMP_NAME])
    assert (home / "keep.pyc").exists()


def _crash_once(marker: str, value: int) -> int:
    """Kills its worker process with SIGSEGV the first time (while ``marker`` does not exist)."""
    from pathlib import Path

    if not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGSEGV)
    return value * 2


def test_a_worker_crash_rebuilds_the_cache_and_runs_again_once(tmp_path, monkeypatch):
    from joblib import Parallel, delayed

    from ser_lib import kernels

    removed = []
    monkeypatch.setattr(kernels, "remove_compiled", lambda: removed.append(True) or [])
    marker = str(tmp_path / "crashed")

    def run():
        return Parallel(n_jobs=2)(delayed(_crash_once)(marker, value) for value in range(4))

    with pytest.warns(UserWarning, match="A test worker crashed .*SIGSEGV.* Removed numba's cache of librosa's kernels"):
        assert kernels.rerun_after_worker_crash(run, what="test") == [0, 2, 4, 6]
    assert removed == [True]
    (tmp_path / "crashed").unlink()

    def always_crash():
        Path(marker).unlink(missing_ok=True)
        return run()

    with pytest.warns(UserWarning), pytest.raises(kernels.KernelCacheError, match="A test worker crashed again"):
        kernels.rerun_after_worker_crash(always_crash, what="test")
