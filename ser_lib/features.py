"""The original recipe's 195 features, computed fast, and a cached parallel batch extractor.

The reference recipe (kept verbatim in ``tests/test_features.py``) loads 3 s of mono audio at
22,050 Hz and stacks the frame means of seven librosa features. Computed naively it takes the STFT
five times and rebuilds the constant-Q filter bank for every clip. Here the STFT is taken once and
passed to every feature as ``S=``, the mel spectrogram once and passed to the MFCC, and the
constant-Q filter banks are built once per process from librosa's public filter constructors (see
:func:`_constant_q_chroma`). The values equal the reference's to ``rtol=1e-5`` (tested).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

FEATURE_BLOCKS = {"mfcc": 40, "chroma": 12, "mel": 128, "contrast": 7, "tonnetz": 6, "zcr": 1, "rolloff": 1}
N_FEATURES = sum(FEATURE_BLOCKS.values())
FEATURE_NAMES = tuple(
    name if size == 1 else f"{name}_{i:03d}" for name, size in FEATURE_BLOCKS.items() for i in range(size)
)
# Everything that changes the numbers: cached features and saved models are keyed by this.
FEATURE_SETTINGS = {
    "recipe": "original-195",
    "sample_rate": 22050,
    "duration": 3.0,
    "n_fft": 2048,
    "hop_length": 512,
    "blocks": FEATURE_BLOCKS,
}
# Shorter clips give constant-Q and STFT frames that are mostly padding: numbers, but not features.
MIN_DURATION = 0.25
# Peak amplitude below which a clip is digital silence (-80 dBFS).
SILENCE_PEAK = 1e-4

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ser_lib"


import librosa

from ser_lib.kernels import KernelCacheError, ensure_kernels, remove_compiled


class AudioError(ValueError):
    """An audio file that cannot give features; the message says what was expected."""


def load_audio(path, *, sr: int = 22050, duration: float | None = 3.0, offset: float = 0.0) -> np.ndarray:
    """Load mono audio at ``sr`` exactly as the original recipe does, with clear errors.

    Parameters
    ----------
    path : str or Path
        An audio file soundfile can decode (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1).
    sr : int
        Target sample rate; the file is resampled (soxr, high quality) when it differs.
    duration, offset : float
        Seconds to read and where to start; only that part is read from disk.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        The path is missing or is a folder.
    AudioError
        The file cannot be decoded, has no samples, is too short, silent or not finite.
    """
    path = check_audio_path(path)
    if path.stat().st_size == 0:
        raise AudioError(f"'{path}' is empty (0 bytes): expected an audio file.")
    ensure_kernels()
    try:
        with warnings.catch_warnings():
            # librosa's audioread fallback warns before it fails; the failure says enough.
            warnings.simplefilter("ignore")
            y, _ = librosa.load(path, sr=sr, mono=True, duration=duration, offset=offset)
    except librosa.ParameterError as error:
        # librosa checks decoded samples before resampling or mixing down channels.
        raise AudioError(f"'{path}' contains NaN or infinite samples: expected finite audio.") from error
    except Exception as error:  # soundfile, audioread and EOFError all mean "not readable audio"
        raise AudioError(
            f"Cannot decode '{path}' as audio ({type(error).__name__}: {error}): "
            "expected a WAV, FLAC, OGG or MP3 file."
        ) from error
    _check_signal(y, sr=sr, source=f"'{path}'")
    return y


def check_audio_path(path) -> Path:
    """``path`` as a Path if it names an existing file; else the error saying what it is instead.

    Raises
    ------
    FileNotFoundError
        Nothing is there, or a symbolic link points to nothing (e.g. into a folder that moved).
    IsADirectoryError
        It is a folder.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise FileNotFoundError(
            f"'{path}' is a symbolic link to '{os.readlink(path)}', which does not exist: expected an audio file."
        )
    if not path.exists():
        raise FileNotFoundError(f"No audio file at '{path}': expected a path to a .wav/.flac/.ogg/.mp3 file.")
    if path.is_dir():
        raise IsADirectoryError(f"'{path}' is a folder: expected an audio file.")
    return path


def truncation_warning(info) -> str | None:
    """What a file whose header announces more audio than it holds is missing (an interrupted copy), else None.

    Parameters
    ----------
    info : soundfile._SoundFileInfo
        ``soundfile.info(path)``. libsndfile reads such a file up to its real end and notes the
        difference in ``extra_info`` (``data : 132300 (should be 66128)``, in bytes).
    """
    match = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info, flags=re.MULTILINE)
    if match is None:
        return None
    announced, present = (int(group) for group in match.groups())
    if present >= announced or announced == 0:
        return None
    seconds = info.duration * announced / present if present else float("nan")
    return (
        f"truncated: the header announces {seconds:.2f} s, the file holds {info.duration:.2f} s "
        f"({1 - present / announced:.0%} missing); predicted from what is there"
    )


def _check_signal(y: np.ndarray, *, sr: int, source: str) -> None:
    if y.size == 0:
        raise AudioError(f"{source} has no audio samples: expected at least {MIN_DURATION} s.")
    if not np.all(np.isfinite(y)):
        raise AudioError(f"{source} contains NaN or infinite samples: expected finite audio.")
    if y.size < MIN_DURATION * sr:
        raise AudioError(f"{source} is too short: {y.size / sr:.3f} s, expected at least {MIN_DURATION} s.")
    peak = float(np.max(np.abs(y)))
    if peak < SILENCE_PEAK:
        raise AudioError(f"{source} is silent: peak amplitude {peak:.2g}, expected at least {SILENCE_PEAK:g} (-80 dBFS).")


@functools.lru_cache(maxsize=256)
def _stft_filter_bank(kind: str, sr: int, n_fft: int, tuning: float = 0.0) -> np.ndarray:
    """The mel or chroma filter bank of librosa's defaults, built once per process."""
    if kind == "mel":
        return librosa.filters.mel(sr=sr, n_fft=n_fft)
    return librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning, n_chroma=FEATURE_BLOCKS["chroma"])


# The constant-Q transform behind the reference's tonnetz: librosa.feature.chroma_cqt's defaults.
_CQT_BINS_PER_OCTAVE = 36
_CQT_OCTAVES = 7


def _relative_bandwidth(freqs: np.ndarray) -> np.ndarray:
    # librosa.filters' own formula (log-frequency spacing around each bin), which it keeps private.
    log_freqs = np.log2(freqs)
    bins_per_octave = np.empty_like(freqs)
    bins_per_octave[0] = 1 / (log_freqs[1] - log_freqs[0])
    bins_per_octave[-1] = 1 / (log_freqs[-1] - log_freqs[-2])
    bins_per_octave[1:-1] = 2 / (log_freqs[2:] - log_freqs[:-2])
    return (2.0 ** (2 / bins_per_octave) - 1) / (2.0 ** (2 / bins_per_octave) + 1)


def _sparsify_rows(x: np.ndarray, *, quantile: float):
    """``librosa.util.sparsify_rows(x, quantile, dtype=complex64)``, vectorised.

    librosa fills a LIL matrix row by row, a third of the time it takes to build a filter bank;
    the kept entries (each row's largest, holding ``1 - quantile`` of its magnitude) are the same.
    """
    import scipy.sparse

    magnitudes = np.abs(x)
    ordered = np.sort(magnitudes, axis=1)
    cumulative = np.cumsum(ordered / magnitudes.sum(axis=1, keepdims=True), axis=1)
    threshold = ordered[np.arange(len(x)), np.argmin(cumulative < quantile, axis=1)][:, np.newaxis]
    return scipy.sparse.csr_matrix(np.where(magnitudes >= threshold, x, 0).astype(np.complex64))


@functools.lru_cache(maxsize=128)
def _constant_q_filter_banks(sr: float, tuning: float):
    """Frequency-domain filter banks of librosa.cqt, one per octave, top octave first.

    librosa rebuilds these on every call (77% of the reference's tonnetz time). They depend only
    on the sample rate and the tuning estimate, which takes at most 101 values (0.01 steps), so
    a process builds each at most once.
    """
    n_bins = _CQT_BINS_PER_OCTAVE * _CQT_OCTAVES
    fmin = librosa.note_to_hz("C1") * 2.0 ** (tuning / _CQT_BINS_PER_OCTAVE)
    freqs = librosa.cqt_frequencies(n_bins, fmin=fmin, bins_per_octave=_CQT_BINS_PER_OCTAVE)
    alpha = _relative_bandwidth(freqs)
    lengths, cutoff = librosa.filters.wavelet_lengths(freqs=freqs, sr=sr, window="hann", alpha=alpha)
    if not sr / 8 <= cutoff <= sr / 2:
        # Outside this range librosa downsamples early or refuses; at 22,050 Hz it never does.
        raise ValueError(f"The constant-Q shortcut expects a sample rate from {2 * cutoff:.0f} to {8 * cutoff:.0f} Hz, got {sr}.")
    banks = []
    octave_sr = float(sr)
    for octave in range(_CQT_OCTAVES):
        top = n_bins - octave * _CQT_BINS_PER_OCTAVE
        bins = slice(top - _CQT_BINS_PER_OCTAVE, top)
        basis, basis_lengths = librosa.filters.wavelet(
            freqs=freqs[bins], sr=octave_sr, norm=1, pad_fft=True, window="hann", alpha=alpha[bins]
        )
        n_fft = basis.shape[1]
        basis *= basis_lengths[:, np.newaxis] / float(n_fft)
        fft_basis = np.fft.fft(basis, n=n_fft, axis=1)[:, : n_fft // 2 + 1]
        fft_basis = _sparsify_rows(fft_basis, quantile=0.01)
        fft_basis.data *= np.sqrt(sr / octave_sr)
        banks.append((fft_basis, n_fft))
        octave_sr /= 2.0
    return tuple(banks), np.sqrt(lengths)[:, np.newaxis]


def _constant_q_chroma(y: np.ndarray, *, sr: int, tuning: float, hop_length: int) -> np.ndarray:
    """``librosa.feature.chroma_cqt(y=y, sr=sr, tuning=tuning)``, with the filter banks memoised.

    The octave-by-octave recursion of ``librosa.vqt`` (filter, then halve the rate) is repeated
    here with public librosa calls; the result is handed to ``chroma_cqt(C=...)``.
    """
    banks, sqrt_lengths = _constant_q_filter_banks(float(sr), float(tuning))
    responses = []
    octave_y, octave_hop = y, hop_length
    for fft_basis, n_fft in banks:
        spectrum = librosa.stft(octave_y, n_fft=n_fft, hop_length=octave_hop, window="ones", pad_mode="constant")
        responses.append(fft_basis.dot(spectrum))
        if octave_hop % 2 == 0:
            octave_hop //= 2
            octave_y = librosa.resample(octave_y, orig_sr=2, target_sr=1, res_type="soxr_hq", scale=True)
    n_frames = min(response.shape[-1] for response in responses)
    cqt = np.vstack([response[:, :n_frames] for response in reversed(responses)])
    return librosa.feature.chroma_cqt(C=np.abs(cqt) / sqrt_lengths, sr=sr, bins_per_octave=_CQT_BINS_PER_OCTAVE)


def compute_features(y: np.ndarray, *, sr: int = 22050) -> np.ndarray:
    """The 195 frame-mean features of a signal, equal to the original recipe's.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio, normally the output of :func:`load_audio`.
    sr : int
        Its sample rate.

    Returns
    -------
    features : np.ndarray [shape=(195,), dtype=float32]
        Blocks in the order of ``FEATURE_BLOCKS``.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"Expected mono audio of shape (n,), got shape {y.shape}.")
    _check_signal(y, sr=sr, source="The signal")
    ensure_kernels()
    n_fft, hop = FEATURE_SETTINGS["n_fft"], FEATURE_SETTINGS["hop_length"]
    magnitude = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    power = magnitude**2
    # melspectrogram(S=) and chroma_stft(S=) rebuild their filter banks per call; ours are memoised.
    mel = _stft_filter_bank("mel", sr, n_fft) @ power
    with warnings.catch_warnings():
        # Tonal features of unpitched frames warn about empty frequency sets; the reference's too.
        warnings.simplefilter("ignore", UserWarning)
        chroma_tuning = librosa.estimate_tuning(S=power, sr=sr, bins_per_octave=FEATURE_BLOCKS["chroma"])
        chroma = librosa.util.normalize(
            _stft_filter_bank("chroma", sr, n_fft, chroma_tuning) @ power, norm=np.inf, axis=-2
        )
        # The reference's CQT estimates tuning from its own magnitude STFT: the same one as ours.
        tuning = librosa.estimate_tuning(S=magnitude, sr=sr, bins_per_octave=36)
        tonal_chroma = _constant_q_chroma(y, sr=sr, tuning=tuning, hop_length=hop)
    blocks = [
        librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=FEATURE_BLOCKS["mfcc"]),
        chroma,
        mel,
        librosa.feature.spectral_contrast(S=magnitude, sr=sr),
        librosa.feature.tonnetz(chroma=tonal_chroma),
        librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
        librosa.feature.spectral_rolloff(S=magnitude, sr=sr),
    ]
    return np.concatenate([block.mean(axis=1) for block in blocks]).astype(np.float32)


def extract_features(path, *, recipe: str = "original", augmentation: str = "none") -> np.ndarray:
    """The features of an audio file: ``compute_features(load_audio(path))`` for the original recipe.

    Parameters
    ----------
    path : str or Path
    recipe : str
        ``"original"`` (the 195 features of the first 3 s) or another name of ``RECIPES``; its
        settings' ``duration`` says how much of the file is read (``None``: all of it).
    augmentation : str
        ``"none"``, or a training copy of the audio (``ser_lib.rich_features.AUGMENTATIONS``).

    Returns
    -------
    features : np.ndarray [shape=(n_features,), dtype=float32]
    """
    if recipe not in RECIPES:
        raise ValueError(f"Unknown feature recipe {recipe!r}: expected one of {sorted(RECIPES)}.")
    settings = RECIPES[recipe]["settings"]
    sr = settings["sample_rate"]
    y = load_audio(path, sr=sr, duration=settings["duration"])
    if augmentation != "none":
        y = rich_features.augment_signal(y, augmentation, sr=sr)
    return recipe_features(y, sr=sr, recipe=recipe)


# Feature sets by recipe name: the function of (y, sr), the settings that identify its numbers, the column names.
RECIPES = {"original": {"compute": compute_features, "settings": FEATURE_SETTINGS, "names": FEATURE_NAMES}}
# The speaker-CV winner; its module imports openSMILE only when it computes features.
from ser_lib import rich_features  # noqa: E402

RECIPES["best"] = rich_features.RECIPE


def recipe_features(y: np.ndarray, *, sr: int, recipe: str = "original") -> np.ndarray:
    """The features of a signal under a recipe (see ``RECIPES``)."""
    if recipe not in RECIPES:
        raise ValueError(f"Unknown feature recipe {recipe!r}: expected one of {sorted(RECIPES)}.")
    return RECIPES[recipe]["compute"](y, sr=sr)


def settings_key(settings: dict = FEATURE_SETTINGS) -> str:
    """A short stable hash of feature settings, for cache folders and artifact checks."""
    text = json.dumps({"settings": settings, "librosa": librosa.__version__}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _file_key(path: Path) -> str:
    # Path, size and modification time identify a file's content cheaply, as make does.
    stat = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()


def _extract_one(path: str, cache_folder: str | None, recipe: str = "original", augmentation: str = "none"):
    """Features of one file, or the reason it has none. Runs in worker processes."""
    path = Path(path)
    try:
        cached = None
        if cache_folder is not None:
            suffix = "" if augmentation == "none" else f"-{augmentation}"
            cached = Path(cache_folder) / f"{_file_key(path)}{suffix}.npy"
            if cached.exists():
                return np.load(cached), None
        features = extract_features(path, recipe=recipe, augmentation=augmentation)
        if cached is not None:
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            with open(partial, "wb") as handle:
                np.save(handle, features)
            partial.replace(cached)
        return features, None
    except (OSError, ValueError) as error:
        return None, str(error)


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
):
    """Features for every file of a table, in parallel, cached on disk.

    Parameters
    ----------
    table : pd.DataFrame
        Needs a ``path`` column (e.g. the output of :func:`ser_lib.scan_corpora`).
    n_jobs : int
        Worker processes (joblib); -1 uses every core, 1 runs in this process.
    cache_dir : str, Path or None
        Features are stored under ``cache_dir/<settings key>/`` keyed by each file's path, size and
        modification time, so a rerun extracts nothing. ``None`` turns caching off.
    progress : bool
        Show a tqdm progress bar.
    return_skipped : bool
        Also return the table of files that gave no features.
    warn : bool
        Report files that gave no features with a warning.
    recipe : str
        Which feature set (``RECIPES``); the original 195 by default.
    augmentations : tuple of str, optional
        Training copies to add (``ser_lib.rich_features.AUGMENTATIONS``); ``None`` takes the
        recipe's default (``RECIPES[recipe]["augmentations"]``: none for the original, speed 0.9
        and 1.1 for ``best``), ``()`` adds none. :func:`ser_lib.train` trains on the copies of its
        training clips only.

    Returns
    -------
    features : pd.DataFrame
        The rows of ``table`` that gave features, with one float32 column per feature name. With
        augmentations, the original rows come first, then each augmentation's rows (same labels
        and ``path`` as their source); an ``augmentation`` column says which (``"none"`` for the
        originals). Without, the table has no ``augmentation`` column.
    skipped : pd.DataFrame [columns: path, reason]
        Only with ``return_skipped``: unreadable, empty, silent or too-short files and why.
        They are also reported by a warning (unless ``warn=False``).
    """
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    if "path" not in table.columns:
        raise ValueError(f"Expected a table with a 'path' column, got columns {list(table.columns)}.")
    cache_folder = None
    if cache_dir is not None:
        cache_folder = Path(cache_dir) / settings_key(RECIPES[recipe]["settings"])
        cache_folder.mkdir(parents=True, exist_ok=True)
        cache_folder = str(cache_folder)
    if augmentations is None:
        augmentations = RECIPES[recipe].get("augmentations", ())
    augmentations = tuple(augmentations)
    unknown = [a for a in augmentations if a not in rich_features.AUGMENTATIONS]
    if unknown:
        raise ValueError(f"Unknown augmentations {unknown}: expected names of {sorted(rich_features.AUGMENTATIONS)}.")
    attrs = dict(table.attrs)
    if augmentations:
        kinds = ("none", *augmentations)
        table = pd.concat([table.assign(augmentation=kind) for kind in kinds], ignore_index=True)
    paths = [str(p) for p in table["path"]]
    kinds = table["augmentation"].tolist() if augmentations else ["none"] * len(paths)
    # Compiled (or checked) here, once, before workers start: see ser_lib.kernels.
    ensure_kernels()
    try:
        rows, reasons = _extract_all(paths, kinds, cache_folder, recipe, n_jobs=n_jobs, progress=progress)
    except TerminatedWorkerError as error:
        # A worker killed by a signal: most likely a numba cache broken by a program that compiled
        # librosa's kernels beside another one. Rebuild the cache and run once more (cached rows stay).
        removed = remove_compiled()
        warnings.warn(
            f"A feature worker crashed ({error.__class__.__name__}: {str(error).splitlines()[-1]}). Removed numba's "
            f"cache of librosa's kernels ({len(removed)} files) in case it was broken, and extracting again.",
            stacklevel=2,
        )
        try:
            rows, reasons = _extract_all(paths, kinds, cache_folder, recipe, n_jobs=n_jobs, progress=progress)
        except TerminatedWorkerError as again:
            raise KernelCacheError(
                f"A feature worker crashed again after numba's cache was rebuilt ({str(again).splitlines()[-1]}). "
                "Run with n_jobs=1 (`ser train --workers 1`) to see which file makes it crash, and report it."
            ) from again
    ok = np.array([reason is None for reason in reasons], dtype=bool)
    n_features = len(RECIPES[recipe]["names"])
    matrix = np.stack([row for row in rows if row is not None]) if ok.any() else np.empty((0, n_features), np.float32)
    features = pd.concat(
        [table.loc[ok].reset_index(drop=True), pd.DataFrame(matrix, columns=list(RECIPES[recipe]["names"]))], axis=1
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


def _extract_all(paths, kinds, cache_folder, recipe, *, n_jobs, progress):
    """Features (or None) and the reason for None of each path, in order, with a progress bar."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    if n_jobs == 1:
        results = (_extract_one(p, cache_folder, recipe, k) for p, k in zip(paths, kinds))
    else:
        runner = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=8)
        results = runner(delayed(_extract_one)(p, cache_folder, recipe, k) for p, k in zip(paths, kinds))
    rows, reasons = [], []
    for features, reason in tqdm(results, total=len(paths), desc="Features", unit="clip", disable=not progress):
        rows.append(features)
        reasons.append(reason)
    return rows, reasons


def feature_matrix(features: pd.DataFrame, *, recipe: str = "original") -> np.ndarray:
    """The ``(n, n_features)`` float32 matrix of a table returned by :func:`extract_many`."""
    names = list(RECIPES[recipe]["names"])
    missing = [name for name in names if name not in features.columns]
    if missing:
        raise ValueError(
            f"Expected the {len(names)} feature columns of extract_many(recipe={recipe!r}), "
            f"{len(missing)} are missing, e.g. {missing[:3]}."
        )
    return features.loc[:, names].to_numpy(dtype=np.float32)
