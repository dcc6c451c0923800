"""Speaker adaptation: normalise a clip's features by the statistics of other clips of the same voice.

Per clip, a model must tell a low voice that is sad from a low voice; given several clips of the same
speaker, their mean and spread say what is that voice and what is the moment. The adaptive mode
standardises features on the training population (:class:`SpeakerPrior`), then subtracts the
speaker's mean and divides by the speaker's spread, both *shrunk toward the population* by how many
clips the speaker has (:func:`adapt`):

- each feature's mean is shrunk by ``n / (n + kappa)``, where ``kappa`` is the feature's
  within-speaker variance over the variance of the speakers' true means (both measured on the
  training speakers, an empirical-Bayes estimate). A feature that mostly says who is speaking (mean
  pitch) adapts after a few clips; one that mostly says how (loudness range) needs many, so a few
  clips, or clips of only a few emotions, shift it little.
- each feature's spread, likewise with ``n - 1`` clips, toward the pooled within-speaker spread.

A speaker's clips need not hold every emotion alike: the mean of a speaker heard only angry and
happy is not that voice's mean. Each emotion's effect on the features (its mean deviation from the
speaker's mean, over the training speakers) is known, so the speaker's mean is corrected by the
effects of the emotions its clips hold (``mix``: their share, minus the training share). Training
speakers' shares come from their labels; an unlabelled speaker's are estimated (:func:`estimate_mix`):
adapt without correction, take the adaptive model's mean probabilities as the shares, correct,
``MIX_ITERATIONS`` times. On RAVDESS this puts a speaker heard in two emotions 0.3-1.9 points above the
per-clip accuracy instead of 9 points below it, for about 1.6 points on speakers heard in all (ENHANCEMENTS.md).

A speaker with fewer than ``MIN_CLIPS`` clips is predicted per clip. The adaptive model is trained
on training speakers normalised by their own clips (augmented copies are normalised with their
clip's speaker and never counted in the statistics), and calibrated on held-out speakers predicted as
a user's are: adapted with their emotions' shares estimated, with all their clips and in batches of a few.
A speaker's statistics are plain arrays (:class:`SpeakerStatistics`), stored by enrolment as an
``.npz`` file without pickle.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Fewer clips than this: the per-clip model (see ENHANCEMENTS.md for the measurement).
MIN_CLIPS = 2
# Rounds of estimating an unlabelled speaker's emotion shares from the adaptive model's probabilities.
MIX_ITERATIONS = 3
# Batch sizes whose held-out predictions fit how much softer the adaptive mode must be with few clips.
CALIBRATION_BATCHES = (5, 10, 20)
# The between-speaker variance of a feature's mean is floored here (in population-standardised units),
# so a feature no speaker differs in gets a large but finite kappa (it barely adapts).
_MIN_BETWEEN = 1e-4
ENROLMENT_DIR = "speakers"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class SpeakerPrior:
    """What adaptation shrinks toward, from the training speakers' original clips (float64 arrays).

    ``mean`` and ``scale`` standardise raw features on the population; ``kappa`` and ``within``
    are per standardised feature: within-speaker variance over between-speaker variance of the
    means, and the pooled within-speaker variance. ``effects`` [shape=(n_classes, n_features)]:
    each emotion's mean deviation from its speaker's mean (standardised); ``typical_mix``: the
    emotions' shares among the training clips.
    """

    mean: np.ndarray
    scale: np.ndarray
    kappa: np.ndarray
    within: np.ndarray
    effects: np.ndarray
    typical_mix: np.ndarray

    _NAMES = ("mean", "scale", "kappa", "within", "effects", "typical_mix")

    def arrays(self) -> dict:
        return {f"adapt_{name}": getattr(self, name) for name in self._NAMES}

    @classmethod
    def from_arrays(cls, arrays: dict) -> SpeakerPrior | None:
        if "adapt_mean" not in arrays:
            return None
        return cls(**{name: np.asarray(arrays[f"adapt_{name}"], dtype=np.float64) for name in cls._NAMES})


@dataclass
class SpeakerStatistics:
    """A speaker's raw-feature mean and variance over ``n`` clips (float64 arrays), and their emotions' shares.

    ``mix`` [shape=(n_classes,)]: the share of each emotion among the clips (known, or estimated by
    :func:`estimate_mix`); None: assumed typical (no correction).
    """

    n: int
    mean: np.ndarray
    var: np.ndarray
    mix: np.ndarray | None = None

    @classmethod
    def of(cls, features: np.ndarray, mix=None) -> SpeakerStatistics:
        features = np.atleast_2d(np.asarray(features, dtype=np.float64))
        return cls(n=len(features), mean=features.mean(axis=0), var=features.var(axis=0),
                   mix=None if mix is None else np.asarray(mix, dtype=np.float64))


class RunningStatistics:
    """A voice's statistics gathered one row at a time in constant memory (for a live stream).

    The count, mean and variance of its raw feature rows (Welford's update, float64), and the mean
    of the emotion shares given with each row (the adaptive model's probabilities of that row when
    it came: an online :func:`estimate_mix`). ``start``: an enrolled speaker's statistics to go on from.
    """

    def __init__(self, n_features: int, n_classes: int, start: SpeakerStatistics | None = None,
                 typical_mix: np.ndarray | None = None):
        self.n = 0 if start is None else int(start.n)
        self.mean = np.zeros(n_features) if start is None else np.asarray(start.mean, dtype=np.float64).copy()
        self.m2 = np.zeros(n_features) if start is None else np.asarray(start.var, dtype=np.float64) * self.n
        mix = None if start is None else start.mix if start.mix is not None else typical_mix
        self.shares = np.zeros(n_classes) if mix is None else np.asarray(mix, dtype=np.float64) * self.n
        self.n_shares = 0 if mix is None else self.n

    def add(self, row: np.ndarray) -> None:
        row = np.asarray(row, dtype=np.float64).ravel()
        self.n += 1
        delta = row - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (row - self.mean)

    def add_shares(self, shares: np.ndarray) -> None:
        self.shares += np.asarray(shares, dtype=np.float64).ravel()
        self.n_shares += 1

    def statistics(self) -> SpeakerStatistics:
        """The statistics so far; the emotion shares are the mean of those given (None before any)."""
        mix = self.shares / self.n_shares if self.n_shares else None
        return SpeakerStatistics(n=self.n, mean=self.mean.copy(), var=self.m2 / max(self.n, 1), mix=mix)


def fit_prior(features: np.ndarray, speakers, labels, n_classes: int) -> SpeakerPrior:
    """The population statistics of the training speakers' original clips (raw features, one row per clip).

    ``labels``: each clip's class index (0 to ``n_classes - 1``), for the emotions' effects.

    Raises
    ------
    ValueError
        Fewer than two speakers with two clips or more: nothing to tell voices from moments.
    """
    features, speakers, labels = np.asarray(features, dtype=np.float64), np.asarray(speakers), np.asarray(labels)
    names, counts = np.unique(speakers, return_counts=True)
    names = names[counts >= 2]
    if len(names) < 2:
        raise ValueError(f"Speaker adaptation needs at least 2 training speakers with 2 clips or more, got {len(names)}.")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-12] = 1.0
    z = (features - mean) / scale
    per_speaker = [z[speakers == name] for name in names]
    means = np.array([rows.mean(axis=0) for rows in per_speaker])
    variances = np.array([rows.var(axis=0) for rows in per_speaker])
    n = np.array([len(rows) for rows in per_speaker])[:, None]
    within = variances.mean(axis=0)
    # The variance of a speaker's mean over n clips is its true means' variance plus within / n.
    between = np.maximum(means.var(axis=0) - (variances / n).mean(axis=0), _MIN_BETWEEN)
    # Each emotion's effect: its clips' mean deviation from their speakers' means.
    residual, counted = np.zeros_like(z), np.isin(speakers, names)
    for name, speaker_mean in zip(names, means):
        residual[speakers == name] = z[speakers == name] - speaker_mean
    typical_mix = np.bincount(labels[counted], minlength=n_classes) / counted.sum()
    effects = np.stack([residual[counted & (labels == k)].mean(axis=0) if (counted & (labels == k)).any()
                        else np.zeros(z.shape[1]) for k in range(n_classes)])
    return SpeakerPrior(mean=mean, scale=scale, kappa=np.maximum(within, 1e-12) / between, within=np.maximum(within, 1e-12),
                        effects=effects, typical_mix=typical_mix)


def adapt(features: np.ndarray, statistics: SpeakerStatistics, prior: SpeakerPrior) -> np.ndarray:
    """Raw feature rows of one speaker normalised by that speaker's shrunk statistics (float64).

    ``mean_hat = n / (n + kappa) * speaker_mean`` and
    ``var_hat = w * speaker_var + (1 - w) * within`` with ``w = (n - 1) / (n - 1 + kappa)``, all in
    population-standardised units; the result is ``(z - mean_hat) / sqrt(var_hat)``.
    """
    z = (np.atleast_2d(np.asarray(features, dtype=np.float64)) - prior.mean) / prior.scale
    n = statistics.n
    mean = (statistics.mean - prior.mean) / prior.scale
    if statistics.mix is not None:  # what the emotions of these clips add to their mean
        mean = mean - (statistics.mix - prior.typical_mix) @ prior.effects
    var = statistics.var / prior.scale**2
    mean_hat = n / (n + prior.kappa) * mean
    w = (n - 1) / (n - 1 + prior.kappa)
    var_hat = w * var + (1 - w) * prior.within
    return (z - mean_hat) / np.sqrt(np.maximum(var_hat, 1e-12))


def adapt_rows(features: np.ndarray, speakers, statistics: dict, prior: SpeakerPrior) -> np.ndarray:
    """Every row adapted with the statistics of its speaker (``statistics[speaker]``), as float32."""
    features, speakers = np.asarray(features), np.asarray(speakers)
    out = np.empty(features.shape, dtype=np.float32)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        out[rows] = adapt(features[rows], statistics[speaker], prior)
    return out


def statistics_by_speaker(features: np.ndarray, speakers, labels, n_classes: int) -> dict:
    """:class:`SpeakerStatistics` of each speaker's rows, with the emotions' shares from their ``labels``."""
    speakers, labels = np.asarray(speakers), np.asarray(labels)
    return {speaker: SpeakerStatistics.of(features[speakers == speaker],
                                          mix=np.bincount(labels[speakers == speaker], minlength=n_classes) / (speakers == speaker).sum())
            for speaker in np.unique(speakers)}


def dealt(speakers, size: int, rng: np.random.Generator) -> np.ndarray:
    """Each speaker's rows dealt at random into batches of ``size`` (a last one may be smaller): a batch id per row.

    Batches are what a user with ``size`` clips of a voice adapts together; ids are ``"speaker/k"``.
    """
    speakers = np.asarray(speakers)
    ids = np.empty(len(speakers), dtype=object)
    for speaker in np.unique(speakers):
        own = rng.permutation(np.flatnonzero(speakers == speaker))
        for start in range(0, len(own), size):
            ids[own[start : start + size]] = f"{speaker}/{start // size}"
    return ids


def paired(speakers, labels, rng: np.random.Generator) -> np.ndarray:
    """Each speaker's emotions paired at random, a batch id per row: ``"speaker/k"`` holds the clips of two emotions.

    Batches are what a user heard in few moods adapts together (an odd emotion out is a batch alone).
    """
    speakers, labels = np.asarray(speakers), np.asarray(labels)
    ids = np.empty(len(speakers), dtype=object)
    for speaker in np.unique(speakers):
        own = speakers == speaker
        for k, label in enumerate(rng.permutation(np.unique(labels[own]))):
            ids[own & (labels == label)] = f"{speaker}/{k // 2}"
    return ids


def estimate_mix(features: np.ndarray, prior: SpeakerPrior, probabilities) -> SpeakerStatistics:
    """An unlabelled speaker's statistics with its emotions' shares estimated from its clips.

    ``probabilities(adapted_features)`` is the adaptive model's, uncalibrated (as are the held-out
    models its calibration is fitted on, so both estimate shares alike): the shares start typical, then
    ``MIX_ITERATIONS`` times become the mean probabilities of the clips adapted with the current shares.
    """
    statistics = SpeakerStatistics.of(features)
    for _ in range(MIX_ITERATIONS):
        statistics.mix = probabilities(adapt(features, statistics, prior)).mean(axis=0)
    return statistics


# ---------------------------------------------------------------------------------------------
# Enrolment: a speaker's statistics stored beside a bundle
# ---------------------------------------------------------------------------------------------


def check_speaker_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"Speaker name {name!r}: expected 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(it names a file)."
        )
    return name


def enrolment_path(artifacts_dir, name: str) -> Path:
    return Path(artifacts_dir) / ENROLMENT_DIR / f"{check_speaker_name(name)}.npz"


def _features_of(recipe: str) -> tuple[str, str]:
    """The recipe's name and the key of its feature settings: what stored statistics must match."""
    from ser_lib.features import settings_key
    from ser_lib.recipes import get_recipe

    recipe = get_recipe(recipe)
    return recipe.name, settings_key(recipe.settings)


def save_statistics(path: Path, statistics: SpeakerStatistics, *, recipe: str, clips: list) -> Path:
    """Write a speaker's statistics as plain arrays (``np.savez``, no pickle) with the features they were computed for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name, key = _features_of(recipe)
    info = json.dumps({"recipe": name, "settings_key": key, "clips": [str(c) for c in clips]})
    np.savez(path, n=np.int64(statistics.n), mean=statistics.mean, var=statistics.var, mix=statistics.mix, info=np.array(info))
    return path


def load_statistics(path: Path, *, recipe: str) -> SpeakerStatistics:
    """A stored speaker's statistics, checked to be for this recipe and its feature settings."""
    with np.load(path, allow_pickle=False) as arrays:
        info = json.loads(str(arrays["info"]))
        statistics = SpeakerStatistics(n=int(arrays["n"]), mean=arrays["mean"], var=arrays["var"], mix=arrays["mix"])
    if (info.get("recipe"), info.get("settings_key")) != _features_of(recipe):
        raise ValueError(
            f"The speaker statistics in '{path}' were computed for recipe {info.get('recipe')!r} with other feature "
            f"settings than this bundle's ({recipe!r}): enrol the speaker again with `ser enroll`."
        )
    return statistics
