"""Recording conditions: clean speech made into what users record, to measure a model under them and train for them.

A model trained on studio clips meets telephone calls, laptop microphones, compressed voice notes and
noisy rooms. Each function here turns a clean mono signal into one of those, reproducibly (random
parts come from the ``rng`` given):

- :func:`telephone`: narrow-band telephone, 8 kHz, 300-3,400 Hz band-pass, G.711 mu-law (8 bits);
- :func:`codec`: a lossy codec round trip through libsndfile (MP3, Opus), at a low bitrate;
- :func:`add_noise`: noise at a given signal-to-noise ratio over the *active* speech (pauses do not
  count), white noise (:func:`white_noise`) or babble made of other speakers' clips (:func:`babble`);
- :func:`reverberate`: a room, as a synthetic impulse response of a given reverberation time;
- :func:`change_level` and :func:`clip`: a quiet microphone, an overdriven one.

``CONDITIONS`` names the settings the benchmarks measure (and training may add as copies): each is
``name -> function(y, sr, rng, talkers)``, ``talkers`` being other speakers' signals for babble.
"""

from __future__ import annotations

import io

import numpy as np

TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
# Frames whose power is within this many dB of the loudest frame count as active speech (for the SNR).
ACTIVE_RANGE_DB = 40.0
_FRAME_SECONDS = 0.02
# The longest encoder and decoder delay a codec round trip is searched for (MP3's is about 50 ms).
_MAX_CODEC_DELAY_SECONDS = 0.2
BABBLE_TALKERS = 4
# A room's reverberant tail starts at this amplitude (Gaussian samples) against the direct path's 1.
_TAIL_AMPLITUDE = 0.3


def telephone(y: np.ndarray, sr: int) -> np.ndarray:
    """A narrow-band telephone channel: resampled to 8 kHz, band-passed to 300-3,400 Hz, G.711 mu-law, back to ``sr``.

    The band-pass is a 4th-order Butterworth filter (the G.712 channel's band); mu-law is the
    8-bit companding of G.711 (``librosa.mu_compress``), so quiet parts keep their detail and loud
    parts lose it. The result has no energy above 4 kHz.
    """
    import librosa
    from scipy import signal

    narrow = _resample(y, sr, TELEPHONE_RATE)
    sos = signal.butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    narrow = np.clip(signal.sosfilt(sos, narrow), -1.0, 1.0)
    narrow = librosa.mu_expand(librosa.mu_compress(narrow, mu=255, quantize=True), mu=255, quantize=True)
    return _length(_resample(narrow, TELEPHONE_RATE, sr), len(y))


# Lossy codecs through libsndfile (>= 1.1): format, subtype, the rate it is written at, compression level
# and bitrate mode. MP3: 16 kbit/s constant (MPEG-2 layer III); Opus: about 15 kbit/s variable on speech.
CODECS = {
    "mp3": ("MP3", "MPEG_LAYER_III", None, 0.95, "CONSTANT"),
    "opus": ("OGG", "OPUS", 16000, 0.95, None),
}


def codec(y: np.ndarray, sr: int, name: str = "mp3") -> np.ndarray:
    """A round trip through a lossy codec (``CODECS``): encoded in memory at its low bitrate, decoded, at ``sr``.

    ``"mp3"``: MPEG-2 layer III at the signal's rate, 16 kbit/s; ``"opus"``: Opus, wide band (16 kHz),
    about 15 kbit/s on speech. The result has the signal's length (the codec's padding is cut).

    Raises
    ------
    ValueError
        An unknown codec, or a libsndfile that cannot write it (it needs libsndfile >= 1.1).
    """
    import soundfile

    if name not in CODECS:
        raise ValueError(f"Unknown codec {name!r}: expected one of {sorted(CODECS)}.")
    container, subtype, rate, level, mode = CODECS[name]
    rate = rate or sr
    signal_at_rate = _resample(y, sr, rate)
    buffer = io.BytesIO()
    try:
        soundfile.write(buffer, signal_at_rate, rate, format=container, subtype=subtype, compression_level=level,
                        bitrate_mode=mode)
    except (soundfile.LibsndfileError, TypeError, ValueError) as error:
        raise ValueError(f"This libsndfile ({soundfile.__libsndfile_version__}) cannot write {name}: {error}") from error
    buffer.seek(0)
    decoded, _ = soundfile.read(buffer, dtype="float32")
    decoded = _resample(decoded, rate, sr)
    return _length(decoded[_delay(decoded, y, int(_MAX_CODEC_DELAY_SECONDS * sr)):], len(y))


def _delay(decoded: np.ndarray, original: np.ndarray, max_lag: int) -> int:
    """The lag (0 to ``max_lag`` samples) at which ``decoded`` best matches ``original``: the codec's delay."""
    from scipy import signal

    n = min(len(decoded), len(original))
    correlation = signal.correlate(decoded[:n], original[:n], mode="full", method="fft")[n - 1 : n + max_lag]
    return int(np.argmax(correlation))


def active_power(y: np.ndarray, sr: int) -> float:
    """Mean power of a signal's active frames: 20 ms frames within ``ACTIVE_RANGE_DB`` of the loudest."""
    frame = max(1, int(_FRAME_SECONDS * sr))
    n_frames = max(1, len(y) // frame)
    powers = np.mean(np.asarray(y[: n_frames * frame], dtype=np.float64).reshape(n_frames, -1) ** 2, axis=1)
    active = powers >= powers.max() * 10 ** (-ACTIVE_RANGE_DB / 10)
    return float(powers[active].mean())


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def babble(talkers: list, n: int, rng: np.random.Generator, *, sr: int, n_talkers: int = BABBLE_TALKERS) -> np.ndarray:
    """Babble: ``n_talkers`` of the given signals (other speakers), each looped from a random start, at equal level, summed.

    Raises
    ------
    ValueError
        Fewer signals than ``n_talkers``.
    """
    if len(talkers) < n_talkers:
        raise ValueError(f"Babble of {n_talkers} talkers needs at least {n_talkers} other speakers' signals, got {len(talkers)}.")
    mix = np.zeros(n)
    for index in rng.choice(len(talkers), n_talkers, replace=False):
        talker = np.asarray(talkers[index], dtype=np.float64)
        looped = np.resize(np.roll(talker, -int(rng.integers(len(talker)))), n)
        mix += looped / np.sqrt(active_power(talker, sr))
    return mix.astype(np.float32)


def add_noise(y: np.ndarray, sr: int, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``y`` plus ``noise`` scaled so that the active speech is ``snr_db`` above the noise's mean power."""
    noise = np.asarray(noise, dtype=np.float64)[: len(y)]
    if len(noise) < len(y):
        raise ValueError(f"Expected noise at least as long as the signal ({len(y)} samples), got {len(noise)}.")
    gain = np.sqrt(active_power(y, sr) / np.mean(noise**2) * 10 ** (-snr_db / 10))
    return (y + gain * noise).astype(np.float32)


def room_impulse(sr: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: the direct path, then Gaussian noise decaying 60 dB in ``rt60`` seconds."""
    t = np.arange(int(rt60 * sr)) / sr
    response = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60) * _TAIL_AMPLITUDE
    response[0] = 1.0
    return response


def reverberate(y: np.ndarray, sr: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """``y`` in a room of reverberation time ``rt60`` (:func:`room_impulse`), at its original active level and length."""
    from scipy import signal

    wet = signal.fftconvolve(np.asarray(y, dtype=np.float64), room_impulse(sr, rt60, rng))[: len(y)]
    return (wet * np.sqrt(active_power(y, sr) / active_power(wet, sr))).astype(np.float32)


def change_level(y: np.ndarray, gain_db: float) -> np.ndarray:
    return (np.asarray(y, dtype=np.float32) * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def clip(y: np.ndarray, overdrive_db: float) -> np.ndarray:
    """An overdriven input: the peak driven ``overdrive_db`` above full scale, everything beyond +-1 cut."""
    peak = float(np.max(np.abs(y))) or 1.0
    return np.clip(np.asarray(y, dtype=np.float64) / peak * 10 ** (overdrive_db / 20), -1.0, 1.0).astype(np.float32)


def _length(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples, as float32 (a resampled round trip may gain or lose one)."""
    return np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32)


def _resample(y, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return np.asarray(y, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(y, dtype=np.float32), sr_in, sr_out, quality="HQ").astype(np.float32)


# name -> function(y, sr, rng, talkers): the settings measured by the benchmarks.
CONDITIONS = {
    "telephone": lambda y, sr, rng, talkers: telephone(y, sr),
    "mp3": lambda y, sr, rng, talkers: codec(y, sr, "mp3"),
    "opus": lambda y, sr, rng, talkers: codec(y, sr, "opus"),
    "white noise 15 dB": lambda y, sr, rng, talkers: add_noise(y, sr, white_noise(len(y), rng), 15.0),
    "babble 10 dB": lambda y, sr, rng, talkers: add_noise(y, sr, babble(talkers, len(y), rng, sr=sr), 10.0),
    "room 0.7 s": lambda y, sr, rng, talkers: reverberate(y, sr, 0.7, rng),
    "quiet -30 dB": lambda y, sr, rng, talkers: change_level(y, -30.0),
    "clipped +12 dB": lambda y, sr, rng, talkers: clip(y, 12.0),
}


# The conditions made of other speakers' signals.
NEEDS_TALKERS = frozenset({"babble 10 dB"})


def apply(y: np.ndarray, sr: int, name: str, *, seed: int = 0, talkers=()) -> np.ndarray:
    """``y`` under the condition ``name`` of ``CONDITIONS`` (``"clean"``: as it is), random parts seeded by ``seed``."""
    if name == "clean":
        return np.asarray(y, dtype=np.float32)
    if name not in CONDITIONS:
        raise ValueError(f"Unknown condition {name!r}: expected 'clean' or one of {sorted(CONDITIONS)}.")
    return CONDITIONS[name](np.asarray(y, dtype=np.float32), sr, np.random.default_rng(seed), list(talkers))
