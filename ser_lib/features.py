"""Features of many files: the training copies (augmentations), a cached parallel batch extractor, the matrix.

Which features a file gives is its recipe's business (:mod:`ser_lib.recipes`); this module reads
each file once per row, adds training copies, runs the rows in worker processes, caches them on
disk keyed by the recipe's settings and each file, and records every file that gave none with why.
Each row also gets the measures of its signal (:mod:`ser_lib.quality`), from which a model learns
what its training clips were like.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
import warnings
from pathlib import Path

import librosa
import numpy as np
import pandas as pd

from ser_lib import conditions, quality
from ser_lib.audio import SAMPLE_RATE, check_audio_path, load_audio
from ser_lib.kernels import ensure_kernels, rerun_after_worker_crash
from ser_lib.recipes import get_recipe
from ser_lib.workers import LostJob, run_jobs

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ser_lib"

# Training-only copies: resampled to sr / factor and played at sr, so 0.9 is slower (and lower).
AUGMENTATIONS = {"speed0.9": 0.9, "speed1.1": 1.1}
# Training copies under recording conditions drawn for each clip: "condition 1" is the first of a seeded
# (by the file's name) order of the conditions made of the clip alone, "condition 2" the second, so a
# clip's copies differ. Babble is left out: made of the table's other speakers before it is split, a
# training clip's babble could hold test speakers' voices (ser_lib.train makes babble copies after the split).
DRAWN_CONDITIONS = tuple(name for name in conditions.CONDITIONS if name not in conditions.NEEDS_TALKERS)
DRAWS = {"condition 1": 0, "condition 2": 1}
# Every other version of a clip extract_many can add: the speed copies, the recording conditions, the drawn ones.
VERSIONS = (*AUGMENTATIONS, *conditions.CONDITIONS, *DRAWS)


def augment_signal(y: np.ndarray, augmentation: str, *, sr: int = SAMPLE_RATE, seed: int = 0, talkers=()) -> np.ndarray:
    """Another version of a signal: ``"none"``, a speed copy (``AUGMENTATIONS``) or a recording condition.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    augmentation : str
        ``"speed0.9"`` resamples to ``int(sr / 0.9)`` Hz (soxr high quality); played at ``sr`` it
        lasts 1/0.9 times longer at 0.9 times the pitch. A name of
        :data:`ser_lib.conditions.CONDITIONS` (``"telephone"``, ``"white noise 15 dB"``, ...) applies
        that condition, its random parts seeded by ``seed``, babble made of ``talkers``' signals.

    Returns
    -------
    y_augmented : np.ndarray [shape=(m,), dtype=float32]
    """
    if augmentation == "none":
        return y
    if augmentation in conditions.CONDITIONS:
        return conditions.apply(y, sr, augmentation, seed=seed, talkers=talkers)
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {augmentation!r}: expected 'none' or one of {list(VERSIONS)}.")
    ensure_kernels()
    target = int(sr / AUGMENTATIONS[augmentation])
    return librosa.resample(y, orig_sr=sr, target_sr=target, res_type="soxr_hq").astype(np.float32)


def original_rows(features: pd.DataFrame) -> pd.DataFrame:
    """The rows of an :func:`ser_lib.extract_many` table that are real clips, not augmented copies."""
    if "augmentation" not in features.columns:
        return features
    return features.loc[features["augmentation"] == "none"]


def extract_features(path, *, recipe: str = "original", augmentation: str = "none", talkers=()) -> np.ndarray:
    """The features of an audio file under a recipe: ``compute(load_audio(path))``.

    Parameters
    ----------
    path : str or Path
    recipe : str
        A name of :func:`ser_lib.recipes.recipe_names`; its settings' ``duration`` says how much of
        the file is read (the original: the first 3 s; ``None``: all of it).
    augmentation : str
        ``"none"``, or another version of the audio (``VERSIONS``: :func:`augment_signal`), its
        random parts seeded by the file's name.
    talkers : sequence of paths
        Other speakers' files, for babble.

    Returns
    -------
    features : np.ndarray [shape=(n_features,), dtype=float32]
    """
    recipe = get_recipe(recipe)
    if augmentation in DRAWS:
        augmentation = drawn_condition(path, augmentation)
    y = _read(path, recipe)
    return recipe.compute(_version_signal(y, path, recipe, augmentation, talkers), sr=recipe.sample_rate)


def _read(path, recipe) -> np.ndarray:
    """The samples of a file a recipe reads (its rate, its duration)."""
    return load_audio(path, sr=recipe.sample_rate, duration=recipe.clip_seconds)


def _version_signal(y: np.ndarray, path, recipe, augmentation: str, talkers) -> np.ndarray:
    """A file's signal ``y`` as ``augmentation`` (a name of ``VERSIONS`` but the draws) makes it, seeded by the file's name."""
    if augmentation == "none":
        return y
    others = [_read(t, recipe) for t in talkers]
    return augment_signal(y, augmentation, sr=recipe.sample_rate, seed=_name_seed(path, augmentation), talkers=others)


@functools.lru_cache(maxsize=1)
def _conditions_key() -> str:
    """A hash of ser_lib.conditions' source: a changed condition is extracted anew, not read from the cache."""
    return hashlib.sha1(Path(conditions.__file__).read_bytes()).hexdigest()[:8]


def drawn_condition(path, draw: str) -> str:
    """The recording condition a clip's ``draw`` (``"condition 1"``, ``"condition 2"``) is under: seeded by its file's name."""
    order = np.random.default_rng(_name_seed(path, "conditions")).permutation(len(DRAWN_CONDITIONS))
    return DRAWN_CONDITIONS[order[DRAWS[draw]]]


def _name_seed(path, augmentation: str) -> int:
    """A seed from a file's name and a version: the same noise for the same clip wherever it is stored."""
    return int(hashlib.sha1(f"{Path(path).name}|{augmentation}".encode()).hexdigest()[:8], 16)


def settings_key(settings: dict) -> str:
    """A short stable hash of feature settings, for cache folders and artifact checks."""
    text = json.dumps({"settings": settings, "librosa": librosa.__version__}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _file_key(path: Path) -> str:
    """A file's name and a hash of its bytes: the same cache entry wherever and whenever the file is stored.

    A corpus downloaded again, copied or mounted elsewhere (a cluster worker's path) keeps its cached
    features; a changed file gets new ones. The name is part of it because versions are seeded by it.
    """
    digest = hashlib.sha1(f"{path.name}|".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract_clip(path: str, versions, talkers=(), cache_folder: str | None = None, recipe: str = "original") -> list:
    """Features and input measures of versions of one file, read once, or the reason a version has none. Runs in worker processes.

    ``versions`` are names of ``VERSIONS`` but the draws (``"none"``: the file as it is); babble is
    made of ``talkers``. Returns one ``(features, measures, reason)`` per version, in order.
    """
    recipe = get_recipe(recipe)
    try:
        path = check_audio_path(path)
        key = None if cache_folder is None else _file_key(path)
    except OSError as error:
        return [(None, None, str(error))] * len(versions)
    signal = None  # the file's samples, read when the cache first lacks a version's
    results = []
    for version in versions:
        others = talkers if version in conditions.NEEDS_TALKERS else ()
        try:
            files = _cache_files(key, version, others, cache_folder)
            features, measures = (np.load(file) if file is not None and file.exists() else None for file in files)
            if features is None or measures is None:
                if signal is None:
                    signal = _read(path, recipe)
                y = _version_signal(signal, path, recipe, version, others)
                if features is None:
                    features = recipe.compute(y, sr=recipe.sample_rate)
                    _save(files[0], features)
                if measures is None:
                    measures = quality.measure_row(y, recipe.sample_rate)
                    _save(files[1], measures)
            results.append((features, measures, None))
        except (OSError, ValueError) as error:
            results.append((None, None, str(error)))
    return results


def _cache_files(key: str | None, version: str, talkers, cache_folder: str | None) -> tuple:
    """Where a version of a file (its :func:`_file_key`) keeps its features and its input measures (``(None, None)``: no cache)."""
    if cache_folder is None:
        return None, None
    suffix = "" if version == "none" else "-" + version.replace(" ", "_")
    if version in conditions.CONDITIONS:  # their code is part of what the features are
        suffix += f"-{_conditions_key()}"
    if talkers:
        suffix += "-" + hashlib.sha1("|".join(Path(t).name for t in talkers).encode()).hexdigest()[:8]
    return Path(cache_folder) / f"{key}{suffix}.npy", Path(cache_folder) / f"{key}{suffix}.input-{quality.measures_key()}.npy"


def _save(file: Path | None, values: np.ndarray) -> None:
    """Written whole or not at all (another process reading the cache never sees half a file); None: no cache.

    The partial file's name is unique across machines sharing the cache; a cluster worker creates
    the cache folder it lacks.
    """
    if file is None:
        return
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_suffix(f".{uuid.uuid4().hex}.tmp")
    with open(partial, "wb") as handle:
        np.save(handle, values)
    partial.replace(file)


def extract_many(
    table: pd.DataFrame,
    *,
    n_jobs: int = -1,
    cache_dir=DEFAULT_CACHE_DIR / "features",
    progress: bool = True,
    return_skipped: bool = False,
    warn: bool = True,
    recipe: str = "original",
    augmentations: tuple | None = None,
    originals: bool = True,
    talkers: pd.DataFrame | None = None,
    scheduler: str | None = None,
):
    """Features for every file of a table, in parallel, cached on disk.

    Parameters
    ----------
    table : pd.DataFrame
        Needs a ``path`` column (e.g. the output of :func:`ser_lib.scan_corpora`); columns named as
        the recipe's features (a table this function returned) are replaced.
    n_jobs : int
        Worker processes (joblib); -1 uses every core, 1 runs in this process.
    scheduler : str, optional
        A Dask scheduler's address (``"tcp://host:8786"``): the files are read and their features
        computed on its workers instead (:mod:`ser_lib.workers`), one job per clip, with the same
        results. The workers must reach the table's paths and, for the cache, ``cache_dir``.
    cache_dir : str, Path or None
        Features are stored under ``cache_dir/<settings key>/`` keyed by each file's name and
        content, so a rerun extracts nothing, nor does a copy of the corpus elsewhere. ``None``
        turns caching off.
    progress : bool
        Show a tqdm progress bar.
    return_skipped : bool
        Also return the table of files that gave no features.
    warn : bool
        Report files that gave no features with a warning.
    recipe : str
        Which recipe's features (:func:`ser_lib.recipes.get_recipe`); the original 195 by default.
    augmentations : tuple of str, optional
        Other versions of every clip to add (``VERSIONS``: speed copies, recording conditions of
        :mod:`ser_lib.conditions`, or ``"condition 1"`` / ``"condition 2"``: a condition drawn for
        each clip, :func:`drawn_condition`); ``None`` takes the recipe's own training copies (none
        for the original; speed 0.9 and 1.1 and two drawn conditions for ``functionals_fusion``),
        ``()`` adds none.
        :func:`ser_lib.train` trains on the copies of its training clips only. Babble needs a
        ``speaker`` column: each clip's babble is made of one clip of each of four other speakers
        of the table (of ``talkers``, if given).
    originals : bool
        Also return the clips as they are (``augmentation`` ``"none"``); ``False``: only the other
        versions (what :func:`ser_lib.train` extracts for babble copies once the split is known).
    talkers : pd.DataFrame, optional
        The clips (``path``, ``speaker``) babble is made of instead of the table's own: e.g. a test
        part's clips in babble of every speaker of the corpus.

    Returns
    -------
    features : pd.DataFrame
        The rows of ``table`` that gave features, with the measures of their signal
        (:data:`ser_lib.quality.COLUMNS`: ``input_snr_db``, ...) and one float32 column per
        feature name. With augmentations, the original rows come first (unless
        ``originals=False``), then each augmentation's rows (same labels and ``path`` as their
        source); an ``augmentation`` column says which (``"none"`` for the originals; a drawn
        condition's rows name the condition each clip got).
        Without, the table has no ``augmentation`` column.
    skipped : pd.DataFrame [columns: path, reason]
        Only with ``return_skipped``: unreadable, empty, silent or too-short files and why.
        They are also reported by a warning (unless ``warn=False``).
    """
    if "path" not in table.columns:
        raise ValueError(f"Expected a table with a 'path' column, got columns {list(table.columns)}.")
    recipe = get_recipe(recipe)
    # A table that already holds this recipe's features (an earlier extract_many's) gets them anew, not twice.
    table = table.drop(columns=[name for name in (*quality.COLUMNS.values(), *recipe.feature_names) if name in table.columns])
    cache_folder = None
    if cache_dir is not None:
        cache_folder = Path(cache_dir) / settings_key(recipe.settings)
        cache_folder.mkdir(parents=True, exist_ok=True)
        cache_folder = str(cache_folder)
    augmentations = tuple(recipe.augmentations if augmentations is None else augmentations)
    unknown = [a for a in augmentations if a not in VERSIONS]
    if unknown:
        raise ValueError(f"Unknown augmentations {unknown}: expected names of {list(VERSIONS)}.")
    babble_of = _babble_talkers(table, augmentations, table if talkers is None else talkers)
    attrs, n_clips = dict(table.attrs), len(table)
    if not augmentations and not originals:
        raise ValueError("originals=False with no augmentations asks for no rows: name the versions to extract.")
    if augmentations:
        kinds = ("none", *augmentations) if originals else augmentations
        table = pd.concat([table.assign(augmentation=kind) for kind in kinds], ignore_index=True)
        drawn = table["augmentation"].isin(list(DRAWS))
        table.loc[drawn, "augmentation"] = [drawn_condition(path, draw)
                                            for path, draw in zip(table.loc[drawn, "path"], table.loc[drawn, "augmentation"])]
    paths = [str(p) for p in table["path"]]
    kinds = table["augmentation"].tolist() if augmentations else ["none"] * len(paths)
    # One job per clip: the file is read once for all its versions (rows k * n_clips + i are clip i's).
    clips = [(paths[i], kinds[i::n_clips], babble_of.get(paths[i], ())) for i in range(n_clips)]
    # Compiled (or checked) here, once, before workers start: see ser_lib.kernels.
    ensure_kernels()
    rows, measures, reasons = rerun_after_worker_crash(
        lambda: _extract_all(clips, cache_folder, recipe.name, n_jobs=n_jobs, scheduler=scheduler, progress=progress),
        what="feature extraction",
    )
    ok = np.array([reason is None for reason in reasons], dtype=bool)
    matrix = np.stack([row for row in rows if row is not None]) if ok.any() else np.empty((0, recipe.n_features), np.float32)
    measured = (np.stack([m for m in measures if m is not None]) if ok.any()
                else np.empty((0, len(quality.COLUMNS))))
    features = pd.concat(
        [table.loc[ok].reset_index(drop=True), pd.DataFrame(measured, columns=list(quality.COLUMNS.values())),
         pd.DataFrame(matrix, columns=list(recipe.feature_names))], axis=1
    )
    features.attrs.update(attrs)
    skipped = pd.DataFrame(
        {"path": [p for p, good in zip(paths, ok) if not good], "reason": [r for r in reasons if r is not None]}
    )
    # A file that gives no features gives no augmented copies either: report it once.
    skipped = skipped.drop_duplicates("path", ignore_index=True)
    if len(skipped) and warn:
        examples = "; ".join(skipped["reason"].head(3))
        warnings.warn(f"{len(skipped)} of {len(paths)} files gave no features, e.g. {examples}", stacklevel=2)
    return (features, skipped) if return_skipped else features


def _babble_talkers(table: pd.DataFrame, augmentations, pool: pd.DataFrame) -> dict:
    """Path -> the clips its babble is made of: one of each of four other speakers of ``pool``, seeded by the file's name.

    A clip with fewer other speakers in the pool gets one clip of each there is: its babble row is
    then skipped with the reason (:func:`ser_lib.conditions.babble` says how many it needs).
    """
    if not set(augmentations) & conditions.NEEDS_TALKERS:
        return {}
    if not {"path", "speaker"} <= set(table.columns) & set(pool.columns):
        raise ValueError("Babble is made of other speakers' clips: expected tables with 'path' and 'speaker' columns.")
    pool_paths, pool_speakers = pool["path"].astype(str).to_numpy(), pool["speaker"].astype(str).to_numpy()
    clips_of = {speaker: pool_paths[pool_speakers == speaker] for speaker in sorted(set(pool_speakers))}
    chosen = {}
    for path, speaker in zip(table["path"].astype(str), table["speaker"].astype(str)):
        others = [other for other in clips_of if other != speaker]
        rng = np.random.default_rng(_name_seed(path, "talkers"))
        picked = rng.choice(len(others), min(len(others), conditions.BABBLE_TALKERS), replace=False)
        chosen[path] = tuple(str(rng.choice(clips_of[others[k]])) for k in picked)
    return chosen


def _extract_all(clips, cache_folder, recipe, *, n_jobs, scheduler, progress):
    """Features and input measures (or None) and the reason for None of every version of each clip, in row order.

    ``clips`` are ``(path, versions, talkers)``; version k of clip i is row ``k * len(clips) + i``.
    The progress bar counts rows.
    """
    from tqdm.auto import tqdm

    n_rows = sum(len(versions) for _, versions, _ in clips)
    rows, measures, reasons = [None] * n_rows, [None] * n_rows, [None] * n_rows
    jobs = [(path, versions, talkers, cache_folder, recipe) for path, versions, talkers in clips]
    with tqdm(total=n_rows, desc="Features", unit="row", disable=not progress) as bar:
        for i, results in run_jobs(_extract_clip, jobs, n_jobs=n_jobs, scheduler=scheduler, name="extract_many"):
            versions = clips[i][1]
            if isinstance(results, LostJob):
                results = [(None, None, results.reason)] * len(versions)
            for k, (features, measured, reason) in enumerate(results):
                row = k * len(clips) + i
                rows[row], measures[row], reasons[row] = features, measured, reason
            bar.update(len(versions))
    return rows, measures, reasons


def feature_matrix(features: pd.DataFrame, *, recipe: str = "original") -> np.ndarray:
    """The ``(n, n_features)`` float32 matrix of a table returned by :func:`extract_many`."""
    recipe = get_recipe(recipe)
    names = list(recipe.feature_names)
    missing = [name for name in names if name not in features.columns]
    if missing:
        raise ValueError(
            f"Expected the {len(names)} feature columns of extract_many(recipe={recipe.name!r}), "
            f"{len(missing)} are missing, e.g. {missing[:3]}."
        )
    return features.loc[:, names].to_numpy(dtype=np.float32)
