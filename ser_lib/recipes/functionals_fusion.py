"""Functionals fusion: utterance functionals of the whole clip and three fused logistic regressions (alias ``best``).

The strongest recipe on unseen speakers here (``best`` names it; see ENHANCEMENTS.md), found by a
speaker-grouped search on RAVDESS (actors 01-16, four folds of unseen speakers). From the whole clip,
mono at 22,050 Hz:

- 1,052 frame statistics (``FRAME_BLOCKS``): after trimming silence (30 dB), the 64-band log-mel
  spectrogram and its delta, MFCC 40 with delta and delta-delta, spectral contrast and six
  log spectral descriptors, each summarised by mean / std / 10th / 90th percentile over frames;
  and 8 statistics of the ``librosa.yin`` pitch (65-600 Hz) on the louder frames;
- the 88 eGeMAPSv02 functionals and the 6,373 ComParE_2016 functionals of openSMILE, of the same trimmed speech;
- 271 modulation and contour values (:func:`modulation_contours`): how fast the energy in 16
  bands fluctuates, and how band energies, loudness and pitch move over 8 parts of the utterance.

openSMILE is imported only when features are computed (or their names asked for), so
``import ser_lib`` stays light. Training (:func:`fit`) fuses three logistic regressions whose C and
calibration come from leave-one-speaker-out cross-validation over the training speakers; the
training clips also give speed-perturbed copies and copies under recording conditions
(``AUGMENTATIONS``), never the held-out ones.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import librosa
import numpy as np
import pandas as pd

from ser_lib.audio import SAMPLE_RATE, check_signal
from ser_lib.kernels import ensure_kernels
from ser_lib.model import atypicality, forward, softmax

NAME = "functionals_fusion"
SUMMARY = ("7,784 functionals of the whole clip (frame statistics, eGeMAPS, ComParE, modulation and contours) and "
           "three fused logistic regressions, chosen and calibrated by leave-one-speaker-out CV (needs openSMILE)")
# Training copies of the training clips (ser_lib.features.VERSIONS): speed-perturbed, and under two recording
# conditions drawn for each clip (telephone, codecs, white noise, a room, a quiet or an overdriven input), so
# that a telephone call or a noisy room is no surprise. Measured per member on RAVDESS (ENHANCEMENTS.md):
# each member gains from the conditions; two per clip keep most of what all seven give at half the rows.
AUGMENTATIONS = ("speed0.9", "speed1.1", "condition 1", "condition 2")
# And one copy in babble made of four other training speakers (ser_lib.train extracts it once the split is known).
TALKER_COPIES = ("babble 10 dB",)
# C and calibration come from cross-validation over the training speakers, so the validation
# speakers are more training speakers.
CROSS_VALIDATED = True
# Training also fits the adaptive mode (ser_lib.adapt): +8 to +9 points on unseen RAVDESS speakers given all their
# other clips (ENHANCEMENTS.md).
ADAPTIVE = True
TRAINING_NEEDS = {"opensmile": ("openSMILE", "best")}
STATISTICS = ("mean", "std", "p10", "p90")
SPECTRAL_ROWS = (
    *(f"contrast_{i}" for i in range(7)), "log_centroid", "log_bandwidth", "log_rolloff", "log_flatness", "zcr", "log_rms",
)
PITCH_NAMES = (
    "log2_f0_mean", "log2_f0_std", "log2_f0_p10", "log2_f0_p90", "log2_f0_range", "log2_f0_mean_abs_step",
    "voiced_fraction", "duration_s",
)
# Rows per frame-level block, each summarised by the four STATISTICS (pitch: 8 values as they are).
FRAME_BLOCKS = {"mel": 64, "mel_delta": 64, "mfcc": 120, "spectral": len(SPECTRAL_ROWS)}
N_FRAME = sum(4 * rows for rows in FRAME_BLOCKS.values()) + len(PITCH_NAMES)
OPENSMILE_SETS = {"egemaps": ("eGeMAPSv02", 88), "compare": ("ComParE_2016", 6373)}
# Modulation spectrum and contours: 16 bands of 4 mel bands each (plus their sum for the modulation),
# modulation frequency bands in Hz, and the number of equal segments a contour is averaged over.
MODULATION_BANDS = 16
MODULATION_EDGES_HZ = (0.25, 0.5, 1, 2, 4, 8, 16, 32)
N_SEGMENTS = 8
N_MODULATION = (MODULATION_BANDS + 1) * (len(MODULATION_EDGES_HZ) - 1) + (MODULATION_BANDS + 3) * N_SEGMENTS
N_FEATURES = N_FRAME + sum(size for _, size in OPENSMILE_SETS.values()) + N_MODULATION
# The three members of the fused classifier (see fit): column ranges of the vector.
_COMPARE_START = N_FRAME + OPENSMILE_SETS["egemaps"][1]
MEMBER_COLUMNS = {
    "frame_egemaps": (0, _COMPARE_START),
    "compare": (_COMPARE_START, _COMPARE_START + OPENSMILE_SETS["compare"][1]),
    "modulation": (N_FEATURES - N_MODULATION, N_FEATURES),
}


def _opensmile_version() -> str | None:
    try:
        return version("opensmile")
    except PackageNotFoundError:
        return None


# Everything that changes the numbers: cached features and saved models are keyed by this (its
# "recipe" entry is the feature set's name from before the recipe had its own, kept so that caches
# and bundles stay valid).
SETTINGS = {
    "recipe": "best-frame-egemaps-compare-modulation",
    "sample_rate": SAMPLE_RATE,
    "duration": None,  # the whole file
    "peak_limit": [0.99, 0.9],  # a clip peaking above 0.99 is scaled to peak 0.9
    "trim_top_db": 30,
    "n_fft": 1024,
    "hop_length": 256,
    "n_mels": 64,
    "fmax": 8000,
    "n_mfcc": 40,
    "statistics": list(STATISTICS),
    "pitch": {"method": "yin", "fmin": 65, "fmax": 600, "frame_length": 2048, "voiced_rms_share": 0.1},
    "modulation": {"bands": MODULATION_BANDS, "edges_hz": list(MODULATION_EDGES_HZ), "segments": N_SEGMENTS},
    "opensmile": {"version": _opensmile_version(), "feature_sets": [name for name, _ in OPENSMILE_SETS.values()],
                  "level": "Functionals", "input": "trimmed"},
    "nan_to_num": True,
    "n_features": N_FEATURES,
}


@functools.lru_cache(maxsize=None)
def _smile(name: str):
    if "tensorflow" in sys.modules and "opensmile" not in sys.modules:
        # Loaded after TensorFlow, openSMILE's native library corrupts the heap and the process dies
        # (see ser_lib.recipes.original.import_keras, which loads it first).
        raise RuntimeError(
            f"The {NAME} recipe's openSMILE features cannot be computed in a process that imported TensorFlow "
            "before openSMILE: it would crash. Import opensmile before tensorflow (ser_lib's training does), or "
            "compute the features in worker processes (extract_many(..., n_jobs=2) or more)."
        )
    try:
        import opensmile
    except ImportError as error:
        what, extra = TRAINING_NEEDS["opensmile"]
        raise ModuleNotFoundError(
            f"The {NAME} ('best') recipe needs {what} for its eGeMAPS and ComParE features: pip install 'ser_lib[{extra}]'.",
            name="opensmile",
        ) from error
    feature_set = getattr(opensmile.FeatureSet, OPENSMILE_SETS[name][0])
    return opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.Functionals)


def _stats(matrix: np.ndarray) -> np.ndarray:
    return np.concatenate([
        matrix.mean(1), matrix.std(1), np.percentile(matrix, 10, axis=1), np.percentile(matrix, 90, axis=1)
    ])


def prepare(y: np.ndarray, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The speech every block reads: a checked signal, limited to peak 0.9 if it peaks above 0.99, its silence trimmed.

    The trim (``librosa.effects.trim`` at ``trim_top_db``) cuts the leading and trailing frames
    quieter than 30 dB below the loudest; a clip that is almost all "silence" keeps its samples.
    """
    y = check_signal(y, sr=sr)
    peak = float(np.max(np.abs(y)))
    limit, target = SETTINGS["peak_limit"]
    if peak > limit:
        y = y / peak * target
    trimmed, _ = librosa.effects.trim(y, top_db=SETTINGS["trim_top_db"])
    return trimmed if len(trimmed) > sr * 0.3 else y


def frame_statistics(y: np.ndarray, *, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """The 1,052 frame statistics of a :func:`prepare`-d signal (``FRAME_BLOCKS`` then ``PITCH_NAMES``) and its modulation block.

    Both float64; the second is :func:`modulation_contours` of the same mel spectrogram and pitch track.
    """
    ensure_kernels()
    n_fft, hop = SETTINGS["n_fft"], SETTINGS["hop_length"]
    magnitude = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    mel = librosa.feature.melspectrogram(S=magnitude**2, sr=sr, n_mels=SETTINGS["n_mels"], fmax=SETTINGS["fmax"])
    log_mel = librosa.power_to_db(mel + 1e-10)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=SETTINGS["n_mfcc"])
    mfcc_all = np.vstack([mfcc, librosa.feature.delta(mfcc), librosa.feature.delta(mfcc, order=2)])
    contrast = librosa.feature.spectral_contrast(S=magnitude, sr=sr)
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=sr)
    bandwidth = librosa.feature.spectral_bandwidth(S=magnitude, sr=sr)
    rolloff = librosa.feature.spectral_rolloff(S=magnitude, sr=sr)
    flatness = librosa.feature.spectral_flatness(S=magnitude)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)
    rms = librosa.feature.rms(S=magnitude, frame_length=n_fft)
    n_frames = min(x.shape[1] for x in (log_mel, contrast, zcr, rms))
    pitch = SETTINGS["pitch"]
    f0 = librosa.yin(y, fmin=pitch["fmin"], fmax=pitch["fmax"], sr=sr, frame_length=pitch["frame_length"], hop_length=hop)
    level = rms[0, : len(f0)]
    voiced = level > pitch["voiced_rms_share"] * level.max()
    log_f0 = np.log2(f0[voiced]) if voiced.sum() > 3 else np.log2(f0)
    p10, p90 = np.percentile(log_f0, 10), np.percentile(log_f0, 90)
    pitch_stats = np.array([
        log_f0.mean(), log_f0.std(), p10, p90, p90 - p10,
        np.mean(np.abs(np.diff(log_f0))) if len(log_f0) > 1 else 0, voiced.mean(), len(y) / sr,
    ])
    spectral = np.vstack([
        contrast[:, :n_frames], np.log(centroid[:, :n_frames] + 1), np.log(bandwidth[:, :n_frames] + 1),
        np.log(rolloff[:, :n_frames] + 1), np.log(flatness[:, :n_frames] + 1e-6), zcr[:, :n_frames],
        np.log(rms[:, :n_frames] + 1e-6),
    ])
    statistics = np.concatenate([
        _stats(log_mel), _stats(librosa.feature.delta(log_mel)), _stats(mfcc_all), _stats(spectral), pitch_stats
    ])
    return statistics, modulation_contours(mel, f0, sr=sr, hop_length=hop)


def modulation_contours(mel: np.ndarray, f0: np.ndarray, *, sr: int = SAMPLE_RATE, hop_length: int = 256) -> np.ndarray:
    """How fast the spectrum changes, and how it moves through the utterance (271 values, float64).

    The 64 mel bands (power) are summed in groups of 4 into ``MODULATION_BANDS`` bands.
    Modulation spectrum: for the amplitude envelope of each band and of their sum, the log share
    of its modulation energy in each band of ``MODULATION_EDGES_HZ`` (syllables come at 2-8 Hz).
    Contours: the utterance cut into ``N_SEGMENTS`` equal parts; per part each band's mean log
    power, the log energy and the median log2 pitch of the voiced frames, all relative to the
    whole clip (the shape, not the level), and the voiced share.
    """
    bands = mel.reshape(MODULATION_BANDS, -1, mel.shape[1]).sum(axis=1)
    n_frames = bands.shape[1]
    envelope = np.sqrt(np.vstack([bands, bands.sum(axis=0, keepdims=True)]))
    envelope = envelope - envelope.mean(axis=1, keepdims=True)
    n_fft = max(256, int(2 ** np.ceil(np.log2(n_frames))))
    power = np.abs(np.fft.rfft(envelope * np.hanning(n_frames), n=n_fft, axis=1)) ** 2
    frequency = np.fft.rfftfreq(n_fft, hop_length / sr)
    edges = MODULATION_EDGES_HZ
    modulation = np.stack(
        [power[:, (frequency >= lo) & (frequency < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:])], axis=1
    )
    modulation = np.log(modulation / (modulation.sum(axis=1, keepdims=True) + 1e-12) + 1e-12)

    parts = np.array_split(np.arange(n_frames), N_SEGMENTS)
    log_bands = np.log(bands + 1e-10)
    band_contour = np.stack([log_bands[:, part].mean(axis=1) for part in parts], axis=1)
    band_contour -= band_contour.mean(axis=1, keepdims=True)
    energy = bands.sum(axis=0)
    log_energy = np.log(energy + 1e-10)
    energy_contour = np.array([log_energy[part].mean() for part in parts])
    energy_contour -= energy_contour.mean()
    # yin gives as many frames as the mel spectrogram (same hop, centred); guard anyway.
    f0 = f0[:n_frames]
    voiced = energy[: len(f0)] > SETTINGS["pitch"]["voiced_rms_share"] * energy.max()
    log_f0 = np.log2(f0)
    reference = np.median(log_f0[voiced]) if voiced.sum() > 3 else np.median(log_f0)
    pitch_parts = [part[part < len(f0)] for part in parts]
    pitch_contour = np.array([
        np.median(log_f0[part][voiced[part]]) - reference if voiced[part].any() else 0.0 for part in pitch_parts
    ])
    voiced_contour = np.array([voiced[part].mean() if len(part) else 0.0 for part in pitch_parts])
    return np.concatenate([modulation.ravel(), band_contour.ravel(), energy_contour, pitch_contour, voiced_contour])


def compute(y: np.ndarray, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """This recipe's features of a signal: frame statistics, eGeMAPS, ComParE, modulation and contours.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``sr`` (the recipe's 22,050 Hz): the whole clip, or a 3 s window of a
        long recording.
    sr : int

    Returns
    -------
    features : np.ndarray [shape=(7784,), dtype=float32]
        In the order of ``FEATURE_NAMES``; NaN become 0 and infinities the largest float32.
    """
    if sr != SAMPLE_RATE:
        raise ValueError(f"The {NAME} recipe's features are defined at {SAMPLE_RATE} Hz, got sr={sr}: resample first.")
    y = prepare(y, sr=sr)
    statistics, modulation = frame_statistics(y, sr=sr)
    smile = [opensmile_functionals(y, name, sr=sr) for name in OPENSMILE_SETS]
    # float32 first, as the reference stored them, so an overflow becomes float32's maximum.
    return np.nan_to_num(np.concatenate([statistics, *smile, modulation]).astype(np.float32))


class _SmileRunner:
    """One openSMILE instance of a feature set, run on one signal after another.

    ``opensmile.Smile.process_signal`` builds and frees openSMILE's components for every signal,
    about a fifth of a set's time on a clip; this builds them once and calls ``smile_reset`` between
    signals, with the options and sample conversion ``process_signal`` uses, so the values are the
    same to the bit (tested against it). Not thread-safe: :func:`opensmile_functionals` keeps one per thread.
    """

    def __init__(self, name: str, sr: int):
        smile = _smile(name)  # first: it refuses a process where TensorFlow came before openSMILE
        from opensmile.core.config import config
        from opensmile.core.lib import OpenSMILE

        options = smile._options()
        options.update(source=os.path.join(smile.default_config_root, config.EXTERNAL_INPUT_CONFIG), sampleRate=sr, nBits=16)
        self._source, self._sink, self._frames = config.EXTERNAL_SOURCE_COMPONENT, config.EXTERNAL_OUTPUT_COMPONENT, []
        self._instance = OpenSMILE()
        self._instance.initialize(config_file=smile.config_path, options=options, loglevel=smile.loglevel,
                                  log_file=smile.logfile, debug=smile.verbose)
        self._listen()

    def _listen(self):
        # A reset unregisters the sink's callback; the old ctypes callbacks can go with it.
        self._instance._callbacks.clear()
        self._instance.external_sink_set_callback_ex(self._sink, lambda data, meta: self._frames.append(data.copy()))

    def __call__(self, y: np.ndarray) -> np.ndarray | None:
        """The functionals of ``y`` (float samples in [-1, 1]), or None if openSMILE gave no frame."""
        samples = (np.asarray(y) * 32768).astype(np.int16)  # as Smile.process_signal converts
        self._instance.external_audio_source_write_data(self._source, samples.tobytes())
        self._instance.external_audio_source_set_eoi(self._source)
        self._instance.run()
        self._instance.reset()
        self._listen()
        frames, self._frames = self._frames, []
        return frames[0].reshape(-1) if frames else None

    def close(self):
        self._instance.free()


_RUNNERS = threading.local()


def opensmile_functionals(y: np.ndarray, name: str, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One of ``OPENSMILE_SETS`` (``"egemaps"``, ``"compare"``) of a :func:`prepare`-d signal."""
    set_name, size = OPENSMILE_SETS[name]
    if not hasattr(_RUNNERS, "by_set"):
        _RUNNERS.by_set = {}
    runners = _RUNNERS.by_set
    if (name, sr) not in runners:
        runners[name, sr] = _SmileRunner(name, sr)
    try:
        values = runners[name, sr](y)
    except Exception:
        runners.pop((name, sr)).close()  # its state is unknown: the next signal gets a new instance
        raise
    if values is None:
        warnings.warn(f"openSMILE {set_name} gave no functionals for a signal of {len(y)} samples: they are NaN.",
                      stacklevel=2)
        values = np.full(size, np.nan, dtype=np.float32)
    if values.shape != (size,):
        raise ValueError(f"openSMILE {set_name} gave {values.shape[0]} functionals, expected {size}: check its version.")
    return values


def _feature_names() -> tuple:
    frame = []
    rows = {
        "mel": [f"mel_{{stat}}_{i:03d}" for i in range(64)],
        "mel_delta": [f"mel_delta_{{stat}}_{i:03d}" for i in range(64)],
        "mfcc": [f"mfcc{part}_{{stat}}_{i:03d}" for part in ("", "_delta", "_delta2") for i in range(40)],
        "spectral": [f"{row}_{{stat}}" for row in SPECTRAL_ROWS],
    }
    for block in FRAME_BLOCKS:
        frame += [template.format(stat=stat) for stat in STATISTICS for template in rows[block]]
    frame += list(PITCH_NAMES)
    smile = [f"{name}_{column}" for name in OPENSMILE_SETS for column in _smile(name).feature_names]
    edges = MODULATION_EDGES_HZ
    bands = [f"band{i:02d}" for i in range(MODULATION_BANDS)]
    modulation = [f"modulation_{band}_{lo}-{hi}Hz" for band in (*bands, "all") for lo, hi in zip(edges[:-1], edges[1:])]
    contours = [f"contour_{row}_part{k}" for row in (*bands, "log_energy", "log2_f0", "voiced") for k in range(N_SEGMENTS)]
    return tuple(frame + smile + modulation + contours)


class _LazyNames(Sequence):
    """The column names, built on first use: openSMILE's names need openSMILE; the count does not."""

    def __len__(self) -> int:
        return N_FEATURES

    @functools.cached_property
    def _names(self) -> tuple:
        names = _feature_names()
        if len(names) != N_FEATURES:
            raise ValueError(f"The {NAME} recipe has {len(names)} feature names, expected {N_FEATURES}: check openSMILE's version.")
        return names

    def __getitem__(self, index):
        return self._names[index]

    def __iter__(self):
        return iter(self._names)


FEATURE_NAMES = _LazyNames()


# C grids of the three members, as searched in the speaker-CV study.
C_GRIDS = {"frame_egemaps": (0.003, 0.01, 0.03), "compare": (0.001, 0.01, 0.1), "modulation": (0.001, 0.003, 0.01)}
# Speaker-grouped folds over the training speakers whose out-of-fold predictions choose each
# member's C and calibrate the fused model: leave one speaker out up to 12 speakers, so each
# fold's model is trained on nearly as many voices as the final one (with 12 RAVDESS training
# actors: 64.2% against 62.8% with 6 folds of 2, and a better-matched temperature).
CV_FOLDS = 12


def _fit_member(x, y, fit_rows, columns, c, n_classes):
    """One member: standardise its columns on ``fit_rows``, fit a logistic regression at ``c``.

    Returns the scaler's mean and scale and the logit weights for all ``n_classes``: a class
    missing from the fitted rows gets no weights and a logit far below the others.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    first, last = columns
    scaler = StandardScaler().fit(x[fit_rows, first:last])
    classifier = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x[fit_rows, first:last]), y[fit_rows])
    coef = np.zeros((n_classes, last - first))
    intercept = np.full(n_classes, -30.0)
    coef[classifier.classes_], intercept[classifier.classes_] = classifier.coef_, classifier.intercept_
    return scaler.mean_, scaler.scale_, coef, intercept


def _member_logits(fitted_member, x, columns):
    mean, scale, coef, intercept = fitted_member
    first, last = columns
    return (x[:, first:last] - mean) / scale @ coef.T + intercept


def _fold_member(x, y, fit_rows, predict_rows, columns, c, n_classes):
    """A member fitted on ``fit_rows`` at ``c``, and its logits for ``predict_rows``."""
    member = _fit_member(x, y, fit_rows, columns, c, n_classes)
    return member, _member_logits(member, x[predict_rows], columns)


def _fused(members: list) -> tuple:
    """Members' mean logits as one linear layer on their concatenated standardised columns: (layer, mean, scale)."""
    share = 1 / len(members)
    layer = {"kind": "dense", "kernel": np.concatenate([coef.T * share for _, _, coef, _ in members]).astype(np.float32),
             "bias": np.sum([intercept * share for *_, intercept in members], axis=0).astype(np.float32),
             "activation": "linear"}
    return (layer, np.concatenate([mean for mean, *_ in members]).astype(np.float32),
            np.concatenate([scale for _, scale, *_ in members]).astype(np.float32))


def _speaker_folds(groups, fit_rows, is_copy):
    """(rows to fit, rows to predict: not copies) of each speaker-grouped fold over ``fit_rows``.

    A copy has its clip's speaker, so no version of a held-out clip is fitted on.
    """
    from sklearn.model_selection import GroupKFold

    fit_index = np.flatnonzero(fit_rows)
    n_speakers = len(np.unique(groups[fit_index]))
    if n_speakers < 2:
        raise ValueError(f"The {NAME} recipe cross-validates over training speakers: expected at least 2, got {n_speakers}.")
    folds = []
    for _, held_index in GroupKFold(n_splits=min(CV_FOLDS, n_speakers)).split(fit_index, groups=groups[fit_index]):
        held_out = np.isin(groups, np.unique(groups[fit_index[held_index]]))
        folds.append((fit_rows & ~held_out, fit_rows & held_out & ~is_copy))
    return folds


def fit(x, y, parts, *, n_classes, progress, description, groups, is_copy=None, recorded=None, n_jobs=-1, **_) -> dict:
    """Late fusion (mean logits) of three multinomial logistic regressions.

    Members (``MEMBER_COLUMNS``): ``frame_egemaps`` sees the frame
    statistics and eGeMAPS, ``compare`` the ComParE functionals, ``modulation`` the modulation
    spectrum and contours; each is standardised on the rows it is fitted on. Each member's C is
    the value of its grid (``C_GRIDS``) with the most accurate out-of-fold predictions over
    speaker-grouped folds of the train part (``CV_FOLDS``; ties go to the smaller C); the
    members are then refitted on the whole train part. The fused model is one linear layer on the
    concatenated standardised features, kernel ``[coef_a.T; coef_b.T; coef_c.T] / 3``, bias the
    mean of the intercepts, so a bundle stores it as plain arrays.

    The out-of-fold fused predictions at the chosen C's, with each row's atypicality under its
    fold's scaler, are returned as ``calibration`` (of the rows ``calibration_rows``), on which
    :func:`train` fits the temperature, its slope, the caution factors and the abstention threshold;
    the fused fold models themselves as ``held_out_models`` (``layers``, ``scaler_mean``,
    ``scaler_scale``, and ``rows``: the rows, copies aside, each did not learn from), which the
    adaptive mode's calibration uses to predict held-out speakers as a user does
    (:func:`ser_lib.training.train`). ``groups`` is the speaker of each row; ``is_copy``
    marks training copies (speed copies), which are fitted on but never predicted; every other row
    (an original clip, or one under a recording condition: ``recorded``) is predicted out of fold
    and calibrated on, but C is chosen on the original clips' accuracy, the headline's speech. The validation part is not
    used (``train`` merges it into the train part for this recipe), nor are ``epochs``,
    ``batch_size``, ``patience`` and ``seed`` (the fits are deterministic). The fits run in
    ``n_jobs`` worker processes (-1: one per core).
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    if x.shape[1] != N_FEATURES:
        raise ValueError(f"The {NAME} recipe expects {N_FEATURES} features, got {x.shape[1]}.")
    fit_rows = parts["train"]
    groups = np.asarray(groups)
    is_copy = np.zeros(len(x), dtype=bool) if is_copy is None else np.asarray(is_copy, dtype=bool)
    recorded = np.zeros(len(x), dtype=bool) if recorded is None else np.asarray(recorded, dtype=bool)
    folds = _speaker_folds(groups, fit_rows, is_copy)
    held = np.zeros(len(x), dtype=bool)
    for _, predict_rows in folds:
        held |= predict_rows
    # Every (member, C, fold) fit, then each member refitted on the whole train part at its chosen C.
    searches = [(member, c, k) for member in MEMBER_COLUMNS for c in C_GRIDS[member] for k in range(len(folds))]
    runner = Parallel(n_jobs=n_jobs, return_as="generator")
    results = runner(delayed(_fold_member)(x, y, *folds[k], MEMBER_COLUMNS[member], c, n_classes)
                     for member, c, k in searches)
    members, logits = {}, {(member, c): np.zeros((len(x), n_classes)) for member, c, _ in searches}
    for (member, c, k), (fitted, fold_logits) in tqdm(zip(searches, results), total=len(searches), desc=description,
                                                      unit="fit", disable=not progress):
        members[member, c, k] = fitted
        logits[member, c][folds[k][1]] = fold_logits
    chosen, out_of_fold = {}, np.zeros((len(x), n_classes))
    for member in MEMBER_COLUMNS:
        clips = held & ~recorded
        accuracy = {c: float((logits[member, c][clips].argmax(axis=1) == y[clips]).mean()) for c in C_GRIDS[member]}
        best_c = max(C_GRIDS[member], key=accuracy.get)  # max keeps the first (smallest) of ties
        out_of_fold += logits[member, best_c] / len(MEMBER_COLUMNS)
        chosen[member] = {"C": best_c, "columns": list(MEMBER_COLUMNS[member]),
                          "cv_accuracy": {str(c): round(acc, 4) for c, acc in accuracy.items()}}
    refits = Parallel(n_jobs=n_jobs)(
        delayed(_fit_member)(x, y, fit_rows, MEMBER_COLUMNS[member], chosen[member]["C"], n_classes) for member in MEMBER_COLUMNS
    )
    layer, scaler_mean, scaler_scale = _fused(refits)
    held_out_models, spread = [], np.zeros(len(x))
    for k, (_, predict_rows) in enumerate(folds):
        fold_layer, fold_mean, fold_scale = _fused([members[member, chosen[member]["C"], k] for member in MEMBER_COLUMNS])
        held_out_models.append({"layers": [fold_layer], "scaler_mean": fold_mean, "scaler_scale": fold_scale, "rows": predict_rows})
        spread[predict_rows] = atypicality((x[predict_rows] - fold_mean) / fold_scale)
    # One "epoch": the fused model on its training rows, and out of fold ("val_": speakers each fit never saw).
    row = {}
    for prefix, p, labels in (("", forward([layer], (x[fit_rows] - scaler_mean) / scaler_scale), y[fit_rows]),
                              ("val_", softmax(out_of_fold[held]), y[held])):
        row[f"{prefix}loss"] = float(-np.mean(np.log(np.clip(p[np.arange(len(p)), labels], 1e-12, None))))
        row[f"{prefix}accuracy"] = float((p.argmax(axis=1) == labels).mean())
    n_speakers = len(np.unique(groups[fit_rows]))
    settings = {"classifier": "late fusion of three multinomial logistic regressions (mean logits)",
                "members": chosen, "C_grids": {m: list(g) for m, g in C_GRIDS.items()}, "max_iter": 2000,
                "C_chosen_on": f"out-of-fold accuracy over {len(folds)} speaker-grouped folds of {n_speakers} training speakers",
                "calibrated_on": f"out-of-fold predictions over {len(folds)} speaker-grouped folds of {n_speakers} training speakers"}
    return {"layers": [layer], "keras_model": None, "history": pd.DataFrame([row]).rename_axis("epoch"),
            "scaler_mean": scaler_mean, "scaler_scale": scaler_scale, "settings": settings,
            "calibration": (softmax(out_of_fold[held]), y[held], spread[held]), "calibration_rows": held,
            "held_out_models": held_out_models}


def describe_model(n_features: int, n_classes: int) -> pd.DataFrame:
    """The three members: which columns each sees, its C grid and its parameter count.

    Returns
    -------
    table : pd.DataFrame [columns: member, features, C_grid, parameters]
    """
    if n_features != N_FEATURES:
        raise ValueError(f"The {NAME} recipe has {N_FEATURES} features, got n_features={n_features}.")
    rows = [{"member": member, "features": last - first, "C_grid": ", ".join(map(str, C_GRIDS[member])),
             "parameters": (last - first + 1) * n_classes} for member, (first, last) in MEMBER_COLUMNS.items()]
    rows.append({"member": "fused (mean of the logits)", "features": n_features, "C_grid": "",
                 "parameters": (n_features + 1) * n_classes})
    return pd.DataFrame(rows)
