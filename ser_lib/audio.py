"""Audio in: reading a file as mono samples at the recipes' rate, and the checks every recipe relies on.

Every recipe computes its features from what :func:`load_audio` returns (or from a window of a
longer recording, checked by :func:`check_signal`); a file that cannot give features gets an
:class:`AudioError` that says what was expected.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import librosa
import numpy as np

from ser_lib.kernels import ensure_kernels

# The rate every recipe computes its features at, and the original recipe's clip: its first 3 s
# (also the window of a long recording).
SAMPLE_RATE = 22050
CLIP_SECONDS = 3.0
# Shorter clips give constant-Q and STFT frames that are mostly padding: numbers, but not features.
MIN_DURATION = 0.25
# Peak amplitude below which a clip is digital silence (-80 dBFS).
SILENCE_PEAK = 1e-4


class AudioError(ValueError):
    """An audio file that cannot give features; the message says what was expected."""


def load_audio(path, *, sr: int = SAMPLE_RATE, duration: float | None = CLIP_SECONDS, offset: float = 0.0) -> np.ndarray:
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
    check_signal(y, sr=sr, source=f"'{path}'")
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


def check_signal(y, *, sr: int, source: str = "The signal") -> np.ndarray:
    """``y`` as mono float32 samples, or the error saying why it cannot give features.

    ``source`` names it in the message (a file's path, or "The signal").

    Raises
    ------
    ValueError
        ``y`` is not one channel of shape (n,).
    AudioError
        It is empty, not finite, too short or silent.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"Expected mono audio of shape (n,), got shape {y.shape}.")
    if y.size == 0:
        raise AudioError(f"{source} has no audio samples: expected at least {MIN_DURATION} s.")
    if not np.all(np.isfinite(y)):
        raise AudioError(f"{source} contains NaN or infinite samples: expected finite audio.")
    if y.size < MIN_DURATION * sr:
        raise AudioError(f"{source} is too short: {y.size / sr:.3f} s, expected at least {MIN_DURATION} s.")
    peak = float(np.max(np.abs(y)))
    if peak < SILENCE_PEAK:
        raise AudioError(f"{source} is silent: peak amplitude {peak:.2g}, expected at least {SILENCE_PEAK:g} (-80 dBFS).")
    return y
