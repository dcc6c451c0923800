"""The "best" recipe's 7,513 features, and the speed perturbation its training files get.

Found by a speaker-grouped search on RAVDESS (actors 01-16, four folds of unseen speakers: 60.7%
8-class accuracy against 37.5% for the original recipe). From the whole clip, mono at 22,050 Hz:

- 1,052 frame statistics (``FRAME_BLOCKS``): after trimming silence (30 dB), the 64-band log-mel
  spectrogram and its delta, MFCC 40 with delta and delta-delta, spectral contrast and six
  log spectral descriptors, each summarised by mean / std / 10th / 90th percentile over frames;
  and 8 statistics of the ``librosa.yin`` pitch (65-600 Hz) on the louder frames;
- the 88 eGeMAPSv02 functionals and the 6,373 ComParE_2016 functionals of openSMILE.

openSMILE is imported only when features are computed (or their names asked for), so
``import ser_lib`` stays light. Speed perturbation (``AUGMENTATIONS``) resamples the signal and
plays it at the original rate; :func:`ser_lib.train` gives the copies to training only.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd

SAMPLE_RATE = 22050
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
N_FEATURES = N_FRAME + sum(size for _, size in OPENSMILE_SETS.values())
# The two members of the fused classifier (see ser_lib.train._fit_best): column ranges of the vector.
MEMBER_COLUMNS = {
    "frame_egemaps": (0, N_FRAME + OPENSMILE_SETS["egemaps"][1]),
    "compare": (N_FRAME + OPENSMILE_SETS["egemaps"][1], N_FEATURES),
}


def _opensmile_version() -> str | None:
    try:
        return version("opensmile")
    except PackageNotFoundError:
        return None


SETTINGS = {
    "recipe": "best-frame-egemaps-compare",
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
    "opensmile": {"version": _opensmile_version(), "feature_sets": [name for name, _ in OPENSMILE_SETS.values()],
                  "level": "Functionals"},
    "nan_to_num": True,
    "n_features": N_FEATURES,
}

# Training-only copies: resampled to sr / factor and played at sr, so 0.9 is slower (and lower).
AUGMENTATIONS = {"speed0.9": 0.9, "speed1.1": 1.1}
DEFAULT_AUGMENTATIONS = ("speed0.9", "speed1.1")


def augment_signal(y: np.ndarray, augmentation: str, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A training copy of a signal: ``"none"`` or a name of ``AUGMENTATIONS``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    augmentation : str
        ``"speed0.9"`` resamples to ``int(sr / 0.9)`` Hz (soxr high quality); played at ``sr`` it
        lasts 1/0.9 times longer at 0.9 times the pitch.

    Returns
    -------
    y_augmented : np.ndarray [shape=(m,), dtype=float32]
    """
    import librosa

    if augmentation == "none":
        return y
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {augmentation!r}: expected 'none' or one of {sorted(AUGMENTATIONS)}.")
    target = int(sr / AUGMENTATIONS[augmentation])
    return librosa.resample(y, orig_sr=sr, target_sr=target, res_type="soxr_hq").astype(np.float32)


def original_rows(features: pd.DataFrame) -> pd.DataFrame:
    """The rows of an :func:`ser_lib.extract_many` table that are real clips, not augmented copies."""
    if "augmentation" not in features.columns:
        return features
    return features.loc[features["augmentation"] == "none"]


@functools.lru_cache(maxsize=None)
def _smile(name: str):
    try:
        import opensmile
    except ImportError as error:
        raise ImportError(
            "The 'best' recipe needs openSMILE for its eGeMAPS and ComParE features: pip install opensmile"
        ) from error
    feature_set = getattr(opensmile.FeatureSet, OPENSMILE_SETS[name][0])
    return opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.Functionals)


def _stats(matrix: np.ndarray) -> np.ndarray:
    return np.concatenate([
        matrix.mean(1), matrix.std(1), np.percentile(matrix, 10, axis=1), np.percentile(matrix, 90, axis=1)
    ])


def frame_statistics(y: np.ndarray, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The 1,052 frame statistics of a signal (``FRAME_BLOCKS`` then ``PITCH_NAMES``), as float64."""
    import librosa

    trimmed, _ = librosa.effects.trim(y, top_db=SETTINGS["trim_top_db"])
    # A clip that is almost all "silence" at 30 dB keeps its untrimmed samples.
    y = trimmed if len(trimmed) > sr * 0.3 else y
    n_fft, hop = SETTINGS["n_fft"], SETTINGS["hop_length"]
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=SETTINGS["n_mels"], fmax=SETTINGS["fmax"])
    log_mel = librosa.power_to_db(mel + 1e-10)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=SETTINGS["n_mfcc"])
    mfcc_all = np.vstack([mfcc, librosa.feature.delta(mfcc), librosa.feature.delta(mfcc, order=2)])
    magnitude = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
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
    return np.concatenate([
        _stats(log_mel), _stats(librosa.feature.delta(log_mel)), _stats(mfcc_all), _stats(spectral), pitch_stats
    ])


def compute_rich_features(y: np.ndarray, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The best recipe's features of a signal: frame statistics, eGeMAPS and ComParE functionals.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``sr`` (the recipe's 22,050 Hz): the whole clip, or a 3 s window of a
        long recording.
    sr : int

    Returns
    -------
    features : np.ndarray [shape=(7513,), dtype=float32]
        In the order of ``BEST_FEATURE_NAMES``; NaN become 0 and infinities the largest float32.
    """
    from ser_lib.features import _check_signal

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"Expected mono audio of shape (n,), got shape {y.shape}.")
    if sr != SAMPLE_RATE:
        raise ValueError(f"The best recipe's features are defined at {SAMPLE_RATE} Hz, got sr={sr}: resample first.")
    _check_signal(y, sr=sr, source="The signal")
    peak = float(np.max(np.abs(y)))
    limit, target = SETTINGS["peak_limit"]
    if peak > limit:
        y = y / peak * target
    blocks = [frame_statistics(y, sr=sr)]
    for name, (set_name, size) in OPENSMILE_SETS.items():
        values = _smile(name).process_signal(y, sr).to_numpy()[0]
        if values.shape != (size,):
            raise ValueError(f"openSMILE {set_name} gave {values.shape[0]} functionals, expected {size}: check its version.")
        blocks.append(values)
    # float32 first, as the reference stored them, so an overflow becomes float32's maximum.
    return np.nan_to_num(np.concatenate(blocks).astype(np.float32))


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
    return tuple(frame + smile)


class _LazyNames(Sequence):
    """The column names, built on first use: openSMILE's names need openSMILE; the count does not."""

    def __len__(self) -> int:
        return N_FEATURES

    @functools.cached_property
    def _names(self) -> tuple:
        names = _feature_names()
        if len(names) != N_FEATURES:
            raise ValueError(f"The best recipe has {len(names)} feature names, expected {N_FEATURES}: check openSMILE's version.")
        return names

    def __getitem__(self, index):
        return self._names[index]

    def __iter__(self):
        return iter(self._names)


BEST_FEATURE_NAMES = _LazyNames()

# The entry of ser_lib.features.RECIPES.
RECIPE = {
    "compute": compute_rich_features,
    "settings": SETTINGS,
    "names": BEST_FEATURE_NAMES,
    "augmentations": DEFAULT_AUGMENTATIONS,
}
