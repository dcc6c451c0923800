"""What a recording is like, measured from its signal, and whether a model was trained on anything like it.

A model trained on studio speech answers on a telephone call, a noisy room or a song as if they were
studio speech: its confidence says nothing about how far the input is from its training clips. Four
measures of the input itself (:func:`measure`) say it:

- ``high_band_db``: the share of the spectrum's power above 3.8 kHz, in dB. Wide-band speech keeps
  -35 to -10 dB there; a telephone channel (300-3,400 Hz) leaves about -60.
- ``snr_db``: an estimated signal-to-noise ratio: the active frames' mean power (20 ms frames within
  40 dB of the loudest, as :func:`ser_lib.conditions.active_power`) over the quietest frames' (10th
  percentile), which speech pauses make the noise floor. Clean clips score over 35 dB, white noise
  added at 15 dB about 13; a steady sound (a tone, a hum, noise alone) has no pauses and scores under 3 dB.
  Speech without pauses (a clip trimmed tight, a window of continuous talk) scores 10-30 dB too: a
  long recording's SNR is that of its quietest windows (:func:`recording_measures`).
- ``level_db``: the active frames' power in dB full scale (a quiet microphone is far below -40).
- ``clipped_permille``: samples at the signal's peak (within 0.1%), per thousand: an overdriven input
  holds its peak for many samples, speech almost never.

:func:`fit_limits` takes the range of each measure over the clips a model trained on (its
training copies under recording conditions included); :func:`beyond` finds an input's measures
outside it (such an answer is ``uncertain``: :meth:`ser_lib.model.EmotionModel.uncertain`) and
:func:`describe` says in words what the measures show (the ``note`` of a prediction).
"""

from __future__ import annotations

import functools
import hashlib
import inspect

import numpy as np

from ser_lib.conditions import ACTIVE_RANGE_DB

# measure -> which side of the training range is out of domain ("low", "high" or "both").
MEASURES = {"high_band_db": "low", "snr_db": "low", "level_db": "both", "clipped_permille": "high"}
# The columns extract_many adds with the measures of each row's signal.
COLUMNS = {name: f"input_{name}" for name in MEASURES}
HIGH_BAND_HZ = 3800.0
FRAME_SECONDS = 0.02
NOISE_PERCENTILE = 10
# A model's limits: the range of its training clips' measures, all but LIMIT_PERCENTILE percent on each
# bounded side, widened by a margin, so that a clip only a little past the rarest training clips (another
# microphone, a little more noise) is not called unlike them.
LIMIT_PERCENTILE = 0.5
MARGINS = {"high_band_db": 6.0, "snr_db": 6.0, "level_db": 10.0, "clipped_permille": 1.0}
# What the notes call narrow-band, noisy, not speech, quiet and clipped (descriptions, not decisions:
# whether the model can be trusted is its own training range's business).
NARROW_BAND_DB = -45.0
NOISY_SNR_DB = 20.0
STEADY_SNR_DB = 3.0
QUIET_DB = -60.0
CLIPPED_PERMILLE = 1.0


def measure(y: np.ndarray, sr: int) -> dict:
    """The four measures of a mono signal (see the module docstring).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int

    Returns
    -------
    measures : dict
        ``high_band_db``, ``snr_db``, ``level_db``, ``clipped_permille``, floats.
    """
    y = np.asarray(y, dtype=np.float64)
    frame = max(1, int(FRAME_SECONDS * sr))
    n_frames = max(1, len(y) // frame)
    frames = np.pad(y, (0, max(0, frame - len(y))))[: n_frames * frame].reshape(n_frames, -1)
    powers = np.mean(frames**2, axis=1)
    powers = np.maximum(powers, 1e-20)
    active = powers >= powers.max() * 10 ** (-ACTIVE_RANGE_DB / 10)
    speech, noise = powers[active].mean(), np.percentile(powers, NOISE_PERCENTILE)
    spectrum = (np.abs(np.fft.rfft(frames[active] * np.hanning(frame), axis=1)) ** 2).sum(axis=0)
    frequencies = np.fft.rfftfreq(frame, d=1 / sr)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    return {
        "high_band_db": float(10 * np.log10(max(spectrum[frequencies > HIGH_BAND_HZ].sum(), 1e-20) / max(spectrum.sum(), 1e-20))),
        "snr_db": float(10 * np.log10(max(speech - noise, 1e-20) / noise)),
        "level_db": float(10 * np.log10(speech)),
        "clipped_permille": float(1000 * np.mean(np.abs(y) >= 0.999 * peak)) if peak > 0 else 0.0,
    }


def measure_row(y: np.ndarray, sr: int) -> np.ndarray:
    """:func:`measure` as an array [shape=(4,)] in the order of ``MEASURES`` (the ``input_*`` columns')."""
    return np.array(list(measure(y, sr).values()))


@functools.lru_cache(maxsize=1)
def measures_key() -> str:
    """A hash of what :func:`measure` computes (its code and the constants it reads): cached measures are keyed by it."""
    constants = (FRAME_SECONDS, NOISE_PERCENTILE, HIGH_BAND_HZ, ACTIVE_RANGE_DB)
    return hashlib.sha1(f"{inspect.getsource(measure)}|{constants!r}".encode()).hexdigest()[:8]


def recording_measures(windows: np.ndarray) -> np.ndarray:
    """A long recording's measures from its windows' [shape=(n, 4)]: the median window's, but the SNR of the whole.

    A window of continuous speech has few pauses, so its own SNR estimate is low; the recording's
    noise floor is that of its quietest windows (the 10th percentile of their floors, recovered
    from each window's level and SNR), its speech level the median window's.
    """
    windows = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    snr, level = (list(MEASURES).index(name) for name in ("snr_db", "level_db"))
    combined = np.median(windows, axis=0)
    noise_db = windows[:, level] - 10 * np.log10(1 + 10 ** (windows[:, snr] / 10))  # speech power S = N (1 + SNR)
    speech, noise = 10 ** (combined[level] / 10), 10 ** (np.percentile(noise_db, NOISE_PERCENTILE) / 10)
    combined[snr] = 10 * np.log10(max(speech - noise, 1e-20) / noise)
    return combined


def measure_table(table) -> np.ndarray:
    """The measures of a table's rows (the ``input_*`` columns of :func:`ser_lib.extract_many`), shape (n, 4)."""
    missing = [column for column in COLUMNS.values() if column not in table.columns]
    if missing:
        raise ValueError(f"Expected the input measures {list(COLUMNS.values())} (extract_many adds them), missing {missing}.")
    return table[list(COLUMNS.values())].to_numpy(dtype=np.float64)


def fit_limits(measures: np.ndarray) -> dict:
    """Each measure's range over a model's training clips: ``{name: [low, high]}`` (None where it is not bounded).

    ``measures`` [shape=(n, 4)] in the order of ``MEASURES``; the range leaves ``LIMIT_PERCENTILE``
    percent of the training clips outside on each bounded side, and is widened by ``MARGINS``.

    Raises
    ------
    ValueError
        No finite measures to fit on.
    """
    measures = np.atleast_2d(np.asarray(measures, dtype=np.float64))
    if measures.shape[1:] != (len(MEASURES),) or not np.isfinite(measures).all(axis=1).any():
        raise ValueError(f"Expected rows of the {len(MEASURES)} measures {list(MEASURES)} with finite values, got shape "
                         f"{measures.shape}.")
    measures = measures[np.isfinite(measures).all(axis=1)]
    limits = {}
    for column, (name, side) in enumerate(MEASURES.items()):
        low, high = np.percentile(measures[:, column], [LIMIT_PERCENTILE, 100 - LIMIT_PERCENTILE])
        limits[name] = [float(low - MARGINS[name]) if side in ("low", "both") else None,
                        float(high + MARGINS[name]) if side in ("high", "both") else None]
    return limits


def beyond(measures, limits: dict | None) -> np.ndarray:
    """Which measures of each row [shape=(n, 4) or (4,)] lie outside a model's training range: bool (n, 4)."""
    measures = np.atleast_2d(np.asarray(measures, dtype=np.float64))
    result = np.zeros(measures.shape, dtype=bool)
    for column, name in enumerate(MEASURES):
        low, high = (limits or {}).get(name, (None, None))
        if low is not None:
            result[:, column] |= measures[:, column] < low
        if high is not None:
            result[:, column] |= measures[:, column] > high
    return result


def describe(measures, limits: dict | None = None) -> str:
    """What one input's measures [shape=(4,)] show, in words; "" for an ordinary clip.

    E.g. "narrow-band audio: -62 dB above 3.8 kHz (a telephone?)", "noisy: ~12 dB SNR estimated",
    "not speech: a steady sound, no pauses above its noise", "quiet: speech at -72 dBFS",
    "clipped: ...", then, when it lies outside the model's training range (``limits``, None:
    unknown), which measures do ("unlike the training clips: snr_db 12.3 outside >= 31.0").
    """
    values = dict(zip(MEASURES, np.asarray(measures, dtype=np.float64).reshape(-1)))
    notes = []
    if values["snr_db"] < STEADY_SNR_DB:
        notes.append("not speech: a steady sound, no pauses above its noise")
    elif values["snr_db"] < NOISY_SNR_DB:
        notes.append(f"noisy: ~{values['snr_db']:.0f} dB SNR estimated (or speech without pauses)")
    if values["high_band_db"] < NARROW_BAND_DB:
        notes.append(f"narrow-band audio: {values['high_band_db']:.0f} dB above {HIGH_BAND_HZ / 1000:g} kHz (a telephone?)")
    if values["level_db"] < QUIET_DB:
        notes.append(f"quiet: speech at {values['level_db']:.0f} dBFS")
    if values["clipped_permille"] > CLIPPED_PERMILLE:
        notes.append(f"clipped: {values['clipped_permille']:.0f} per mille of samples at the peak")
    names = [name for name, out in zip(MEASURES, beyond(list(values.values()), limits)[0]) if out]
    if names:
        notes.append("unlike the training clips: " + ", ".join(
            f"{name} {values[name]:.1f} outside {_range(*limits[name])}" for name in names))
    return "; ".join(notes)


def _range(low, high) -> str:
    if low is None:
        return f"<= {high:.1f}"
    if high is None:
        return f">= {low:.1f}"
    return f"{low:.1f} to {high:.1f}"
