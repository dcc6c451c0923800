"""Emotion of audio files from a saved bundle: one clip, or many as a table.

Neither path imports TensorFlow: the bundle's network runs in NumPy (``ser_lib.model.forward``),
loaded once per folder and kept, so repeated calls pay only for the features.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from ser_lib.artifacts import METADATA_FILE, WEIGHTS_FILE, load_bundle
from ser_lib.features import extract_features, extract_many, feature_matrix
from ser_lib.model import EmotionModel


@functools.lru_cache(maxsize=8)
def _load_cached(directory: str, stamp: tuple) -> EmotionModel:
    return load_bundle(directory)


def get_model(artifacts_dir="artifacts") -> EmotionModel:
    """The bundle in ``artifacts_dir``, loaded once and reloaded only when its files change."""
    directory = Path(artifacts_dir).expanduser().resolve()
    stamp = tuple((directory / name).stat().st_mtime_ns if (directory / name).exists() else 0 for name in (METADATA_FILE, WEIGHTS_FILE))
    return _load_cached(str(directory), stamp)


def predict_emotion(path, artifacts_dir="artifacts"):
    """The emotion of one clip, as in the original usage guide.

    Parameters
    ----------
    path : str or Path
        An audio file (first 3 s are used).
    artifacts_dir : str or Path
        A bundle written by the notebook or ``ser train``.

    Returns
    -------
    emotion : str
        The most probable class.
    confidence : float
        Its probability in percent (0-100).
    probabilities : dict
        Every class's probability (0-1), in the bundle's class order.
    """
    model = get_model(artifacts_dir)
    probabilities = model.predict_proba(extract_features(path))[0]
    best = int(np.argmax(probabilities))
    return model.classes[best], float(100 * probabilities[best]), dict(zip(model.classes, map(float, probabilities)))


def predict_many(paths, artifacts_dir="artifacts", *, n_jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Predictions for many files; a file that cannot be read gets its reason, the rest go on.

    Returns
    -------
    table : pd.DataFrame [columns: path, emotion, confidence, <one per class>, error]
        One row per input path in input order; ``confidence`` in percent, class columns hold
        probabilities (0-1); ``error`` is empty for files that were predicted.
    """
    model = get_model(artifacts_dir)
    paths = [str(p) for p in paths]
    inputs = pd.DataFrame({"path": paths, "row": np.arange(len(paths))})
    features, skipped = extract_many(inputs, n_jobs=n_jobs, cache_dir=None, progress=progress, return_skipped=True, warn=False)
    result = pd.DataFrame({"path": paths, "emotion": None, "confidence": np.nan})
    for name in model.classes:
        result[name] = np.nan
    result["error"] = ""
    if len(features):
        probabilities = model.predict_proba(feature_matrix(features))
        rows = features["row"].to_numpy()
        result.loc[rows, "emotion"] = np.asarray(model.classes)[probabilities.argmax(axis=1)]
        result.loc[rows, "confidence"] = 100 * probabilities.max(axis=1)
        result.loc[rows, model.classes] = probabilities
    for path, reason in zip(skipped["path"], skipped["reason"]):
        result.loc[result["path"] == path, "error"] = reason
    return result
