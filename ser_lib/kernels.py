"""librosa's compiled audio kernels: built once, by one process at a time, and repaired if a crash left them broken.

librosa compiles its ``@guvectorize(cache=True)`` kernels (``localmin``, ``localmax``, the zero
crossings and pitch interpolation) with numba when their modules are first imported, and stores
them in numba's disk cache. Two processes compiling them at once can leave a
kernel's two cache files (``X.nbc`` and ``guf-X.nbc``) written by different processes under
different ABI tags (numba issue #10128, unfixed in numba 0.68). Every process that loads such a pair
dies with a segmentation fault, until the files are removed. Our joblib workers, two ``ser``
commands, or the notebook beside the tests all compile at once on a new machine.

:func:`ensure_kernels` is called before any ser_lib code touches librosa's signal functions:

- it holds a file lock beside numba's cache while this process imports those modules, so no two
  ser_lib processes ever compile them together (waiting processes then load the finished cache);
- the first time for a cache (no stamp file beside it), a child process first computes every
  recipe's features of a synthetic signal (:func:`ser_lib.recipes.warm_up`), which compiles or
  loads each kernel and calls it (importing a broken kernel works; calling it crashes): if the
  child dies with SIGSEGV the cache is broken (left by an earlier version or another program), its
  numba files are removed, the reason is logged, and the child runs once more. Only then are the kernels loaded here, so a broken cache never kills this process (or a
  notebook's kernel).

Measured on this project's machine (2 cores): compiling takes 16-30 s, once per environment;
loading the compiled kernels about 3 s per process (mostly importing scipy and librosa).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

# The modules of librosa (0.10-0.11) holding @guvectorize(cache=True) kernels that the recipes load;
# importing them compiles the kernels, or loads them from numba's cache. (librosa.beat holds more,
# but no recipe imports it, and importing it would cost every process 1.4 s.)
KERNEL_MODULES = ("librosa.util.utils", "librosa.core.audio", "librosa.core.pitch")
STAMP_NAME = "ser_lib-kernels.ok"
LOCK_NAME = "ser_lib-kernels.lock"
# How long a process waits for another one that is compiling (seconds).
LOCK_TIMEOUT = 900

_ready = False
# Set in the checking child process, which runs while its parent holds the lock.
_CHILD_ENV = "_SER_LIB_KERNEL_CHECK"


class KernelCacheError(RuntimeError):
    """librosa's compiled kernels cannot be loaded, even after their cache was rebuilt."""


def ensure_kernels() -> None:
    """Make librosa's compiled kernels ready in this process without risking a crash.

    Cheap after the first call in a process. See the module docstring for what it guards against.

    Raises
    ------
    KernelCacheError
        The kernels crash even when compiled afresh, or another process held the lock for
        ``LOCK_TIMEOUT`` seconds.
    """
    global _ready
    if _ready or os.environ.get(_CHILD_ENV):
        return
    from filelock import FileLock, Timeout

    home = lock_home()
    try:
        with FileLock(str(home / LOCK_NAME), timeout=LOCK_TIMEOUT):
            stamp = home / STAMP_NAME
            if not stamp.exists() or stamp.read_text() != _stamp_text():
                _verify_in_child()
                stamp.write_text(_stamp_text())
            for name in KERNEL_MODULES:
                importlib.import_module(name)
    except Timeout as error:
        raise KernelCacheError(
            f"Waited {LOCK_TIMEOUT} s for another process compiling librosa's kernels (lock '{home / LOCK_NAME}'). "
            "If no other ser_lib process is running, remove that file and try again."
        ) from error
    _ready = True


def rerun_after_worker_crash(run, *, what: str):
    """``run()``; if one of its worker processes died, rebuild librosa's compiled kernels and ``run()`` once more.

    A worker killed by a signal (joblib's ``TerminatedWorkerError``) is most likely a numba cache
    broken by a program that compiled librosa's kernels beside another one after this process
    checked it: the cache is removed (the next worker compiles and checks it again), a warning says
    so, and ``run`` runs again (rows cached on disk are not recomputed).

    Raises
    ------
    KernelCacheError
        The workers die again: something else crashes them.
    """
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    try:
        return run()
    except TerminatedWorkerError as error:
        removed = remove_compiled()
        warnings.warn(
            f"A {what} worker crashed ({_exit_codes(error)}). Removed numba's cache of librosa's "
            f"kernels ({len(removed)} files) in case it was broken, and running the {what} again.",
            stacklevel=3,
        )
    try:
        return run()
    except TerminatedWorkerError as again:
        raise KernelCacheError(
            f"A {what} worker crashed again after numba's cache was rebuilt ({_exit_codes(again)}). "
            "Run it in one process (n_jobs=1, `--workers 1`) to see which file makes it crash, and report it."
        ) from again


def _exit_codes(error) -> str:
    """joblib's line naming the dead workers' exit codes, e.g. 'The exit codes of the workers are {SIGSEGV(-11)}'."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if "exit codes" in line), lines[0] if lines else type(error).__name__)


def cache_dirs() -> list[Path]:
    """The folders where numba caches librosa's compiled functions, as numba itself locates them.

    ``NUMBA_CACHE_DIR`` when set, else each librosa folder's ``__pycache__`` if writable, else
    numba's user-wide cache.
    """
    package = Path(importlib.util.find_spec("librosa").origin).parent
    folders = sorted({path.parent for path in package.rglob("*.py")})
    return [_cache_dir(next(folder.glob("*.py"))) for folder in folders]


def lock_home() -> Path:
    """The cache folder of ``librosa.util`` (where the lock and stamp live): one per numba cache."""
    return _cache_dir(importlib.util.find_spec("librosa.util.utils").origin)


def _cache_dir(source) -> Path:
    from numba.core import caching

    # numba's own search order (CacheImpl, named _CacheImpl before numba 0.61)
    implementation = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    for locator_class in implementation._locator_classes:
        locator = locator_class.from_function(_locator_probe, str(source))
        if locator is not None:
            return Path(locator.get_cache_path())
    raise KernelCacheError(f"numba finds no writable cache folder for '{source}': set NUMBA_CACHE_DIR to one.")


def _locator_probe():  # numba's locators read a function's first line number; any function will do
    pass


def remove_compiled() -> list[Path]:
    """Remove numba's cache files (``*.nbi``, ``*.nbc``) of librosa and the stamp, under the lock; return what went.

    The next :func:`ensure_kernels` in a new process compiles and checks them again. Processes that
    have the kernels loaded keep running.
    """
    from filelock import FileLock

    with FileLock(str(lock_home() / LOCK_NAME), timeout=LOCK_TIMEOUT):
        return _remove_compiled()


def _remove_compiled() -> list[Path]:
    removed = []
    for directory in cache_dirs():
        for path in (*directory.glob("*.nbi"), *directory.glob("*.nbc"), directory / STAMP_NAME):
            if path.exists():
                path.unlink()
                removed.append(path)
    return removed


def _stamp_text() -> str:
    from importlib.metadata import version

    return f"numba {version('numba')}, librosa {version('librosa')}, python {sys.version.split()[0]}\n"


def _verify_in_child() -> None:
    """Run every recipe once in a child process (:func:`ser_lib.recipes.warm_up`); if it crashes, rebuild the cache once."""
    # The child must not wait for the lock this process holds.
    env = {**os.environ, _CHILD_ENV: "1"}
    command = [sys.executable, "-c", "from ser_lib.recipes import warm_up; warm_up()"]
    for attempt in range(2):
        logger.warning("Preparing librosa's compiled audio kernels (once per environment, up to ~30 s)...")
        child = subprocess.run(command, capture_output=True, text=True, env=env)
        if child.returncode == 0:
            return
        crashed = child.returncode == -signal.SIGSEGV
        if crashed and attempt == 0:
            removed = _remove_compiled()  # the caller holds the lock
            logger.warning(
                "numba's cache of librosa's kernels was broken: a process using it crashed (SIGSEGV; numba issue "
                "#10128, left by two processes compiling at once). Removed its %d files in %s; compiling them again.",
                len(removed), sorted({str(p.parent) for p in removed}) or "(none found)",
            )
            continue
        what = "crashed (SIGSEGV)" if crashed else f"failed (exit status {child.returncode})"
        raise KernelCacheError(
            f"Running librosa's compiled kernels {what}"
            f"{' even after their numba cache was rebuilt' if crashed else ''}. Output:\n{child.stderr[-2000:]}\n"
            f"Remove numba's cache ({', '.join(map(str, cache_dirs()[:3]))}, ...) or set NUMBA_CACHE_DIR to an empty "
            "folder, and try again."
        )
