"""A miniature, synthetic copy of the Kaggle bundle ``dmitrybabko/speech-emotion-recognition-en``.

:func:`make_demo_corpus` writes the four corpora of the bundle (CREMA-D, RAVDESS, SAVEE, TESS) in
the bundle's exact folder layout and file-name conventions, each at its native sample rate as
16-bit PCM WAV, so that the corpus reader, feature extraction, training and evaluation run end to
end offline. Nothing is downloaded and no audio ships with the package: every clip is synthesised
on the spot, deterministically from ``seed``.

The clips are not speech, but they are built like it, so that the emotion can be learnt from frame
means of spectral features by a model that never heard the speaker:

- a glottal-pulse source (Rosenberg pulse, harmonics up to the band edge) with jitter, shimmer and
  aspiration noise, filtered by five formant resonances that move from vowel to vowel;
- syllables with onsets (silence, stop bursts, fricative noise), phrases and pauses;
- each speaker has a voice: habitual pitch by gender (male ~90-140 Hz, female ~170-250 Hz),
  vocal-tract length (formant scaling), breathiness, spectral tilt, speaking rate, level;
- each emotion has a prosody relative to that voice: pitch level and range, speaking rate, loudness,
  spectral tilt and open quotient (tense or breathy voice), jitter, tremor, creak, a final rise;
- every clip varies at random around its emotion (intensity, pitch, rate, level, tilt, duration),
  so that classes overlap and the task is learnable but not trivial.

Examples
--------
>>> from ser_lib.demo import make_demo_corpus
>>> root = make_demo_corpus("dataset/demo")            # doctest: +SKIP
>>> sorted(p.name for p in root.iterdir())             # doctest: +SKIP
['Crema', 'Ravdess', 'Savee', 'Tess']
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile

from ser_lib.audio import SAMPLE_RATE

# scipy.signal costs ~0.8 s to import; it is imported inside the functions that synthesise audio
# so that `import ser_lib` (and `ser predict`) does not pay for it.

__all__ = ["DEMO_SAMPLE_RATES", "DEMO_VERSION", "MARKER_NAME", "join_clips", "make_demo_corpus"]

# The native sample rates of the four corpora in the Kaggle bundle.
DEMO_SAMPLE_RATES = {"CREMA-D": 16000, "RAVDESS": 48000, "SAVEE": 44100, "TESS": 24414}
# Bump whenever the audio or the layout changes: a marker with another version is not reused.
DEMO_VERSION = 1
MARKER_NAME = ".ser_demo.json"

_DURATION_RANGE = (2.5, 3.5)
_PARTIAL_SUFFIX = ".partial"

# ---------------------------------------------------------------------------------------------
# File-name conventions of the four corpora
# ---------------------------------------------------------------------------------------------
_CREMA_EMOTIONS = {
    "angry": "ANG", "disgust": "DIS", "fear": "FEA", "happy": "HAP", "neutral": "NEU", "sad": "SAD",
}  # fmt: skip
_CREMA_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
# In CREMA-D only the sentence IEO was recorded at three emotion levels; everything else is XX.
_CREMA_LEVELS = ("HI", "MD", "LO")
_CREMA_LEVEL_INTENSITY = {"LO": 0.6, "MD": 0.9, "HI": 1.3, "XX": 1.0}

_RAVDESS_EMOTIONS = {
    "neutral": "01", "calm": "02", "happy": "03", "sad": "04",
    "angry": "05", "fear": "06", "disgust": "07", "surprise": "08",
}  # fmt: skip
_RAVDESS_INTENSITY = {"01": 1.0, "02": 1.35}
# (intensity, statement, repetition) in the order clips are taken; they alternate so that even two
# clips per emotion cover both intensities and both statements. Neutral exists at normal intensity
# only, so RAVDESS has at most 4 neutral clips per actor (8 for the other emotions), as the real one.
_RAVDESS_TAKES = (
    ("01", "01", "01"), ("02", "02", "01"), ("01", "02", "01"), ("02", "01", "01"),
    ("01", "01", "02"), ("02", "02", "02"), ("01", "02", "02"), ("02", "01", "02"),
)  # fmt: skip
_RAVDESS_NEUTRAL_TAKES = (("01", "01", "01"), ("01", "02", "01"), ("01", "01", "02"), ("01", "02", "02"))
_RAVDESS_MAX_ACTORS = 24

_SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
_SAVEE_EMOTIONS = {
    "angry": "a", "disgust": "d", "fear": "f", "happy": "h", "neutral": "n", "sad": "sa", "surprise": "su",
}  # fmt: skip

_TESS_SPEAKERS = ("OAF", "YAF")
# File-name suffix of each emotion; pleasant surprise is "ps".
_TESS_EMOTIONS = {
    "angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
    "neutral": "neutral", "surprise": "ps", "sad": "sad",
}  # fmt: skip
# The bundle's folder names, quirks included (capitals, "surprise" vs "surprised").
_TESS_FOLDERS = {
    ("OAF", "angry"): "OAF_angry", ("OAF", "disgust"): "OAF_disgust", ("OAF", "fear"): "OAF_Fear",
    ("OAF", "happy"): "OAF_happy", ("OAF", "neutral"): "OAF_neutral",
    ("OAF", "surprise"): "OAF_Pleasant_surprise", ("OAF", "sad"): "OAF_Sad",
    ("YAF", "angry"): "YAF_angry", ("YAF", "disgust"): "YAF_disgust", ("YAF", "fear"): "YAF_fear",
    ("YAF", "happy"): "YAF_happy", ("YAF", "neutral"): "YAF_neutral",
    ("YAF", "surprise"): "YAF_pleasant_surprised", ("YAF", "sad"): "YAF_sad",
}  # fmt: skip
# Target words of TESS, which reads the Northwestern University Auditory Test No. 6 word list.
_TESS_WORDS = (
    "back bar base bath bean beg bite boat bone book bought burn cab calm came cause chain chair chalk "
    "chat check cheek chief choice cool dab date dead death deep dime dip ditch dodge dog doll door fail "
    "fall far fat fit five food gap gas gaze germ get gin goal good goose gun half hall hash hate have "
    "haze hire hit hole home hurl jail jar join judge jug juice keen keep keg kick kill king kite knock "
    "late laud lean learn lease lid life limb live loaf long lore lose lot love luck make match merge "
    "mess met mill mob mode mood moon mop mouse nag name near neat nice note numb pad page pain pass "
    "pearl peg perch phone pick pike pole pool puff rag raid rain raise rat reach read red ring ripe "
    "road room rose rot rough rush said sail search seize sell shall shawl sheep shirt should shout "
    "size soap soup sour south sub such sure take talk tape team tell thin third thought thumb time "
    "tip tire ton tool tough turn vine voice void vote wag walk wash week wheat when which whip white "
    "wife wire witch yearn yes young youth"
).split()
# "bite" first, so that even the smallest demo has the bundle's misnamed OA_bite_neutral.wav.
_TESS_DEMO_WORDS = ("bite", "back", "dog") + tuple(w for w in _TESS_WORDS if w not in ("bite", "back", "dog"))
_TESS_QUIRKS = {"Tess/OAF_neutral/OAF_bite_neutral.wav": "Tess/OAF_neutral/OA_bite_neutral.wav"}

# Room noise under each corpus's recordings, dBFS: CREMA-D is the noisiest, TESS the cleanest.
_NOISE_FLOOR_DB = {"CREMA-D": -58.0, "RAVDESS": -66.0, "SAVEE": -62.0, "TESS": -70.0}


# ---------------------------------------------------------------------------------------------
# Voices and emotions
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _VoiceProfile:
    """One speaker's voice, the baseline every emotion is expressed against.

    Attributes
    ----------
    f0_hz : float
        Habitual pitch in neutral speech.
    formant_scale : float
        Vocal-tract scaling of all formants: 1.0 for an adult male, ~1.17 for an adult female.
    breathiness : float
        Aspiration noise added to every emotion's own, relative to the voiced source.
    tilt_db_per_octave : float
        Spectral tilt added to every emotion's own (negative = darker voice).
    rate : float
        Habitual speaking-rate factor.
    gain_db : float
        Recording level relative to the corpus's.
    """

    f0_hz: float = 120.0
    formant_scale: float = 1.0
    breathiness: float = 0.05
    tilt_db_per_octave: float = 0.0
    rate: float = 1.0
    gain_db: float = 0.0


@dataclasses.dataclass(frozen=True)
class _EmotionProfile:
    """How an emotion changes a voice; all values are relative to the speaker's :class:`_VoiceProfile`.

    Attributes
    ----------
    pitch_st : float
        Mean pitch shift from the speaker's habitual pitch, semitones.
    range_st : float
        Size of the syllable-to-syllable pitch movements, semitones.
    rate : float
        Speaking-rate factor (syllables per second relative to neutral).
    gain_db : float
        Loudness relative to neutral.
    tilt_db_per_octave : float
        Extra spectral tilt above 300 Hz: near 0 for tense voice, strongly negative for soft voice.
    open_quotient : float
        Fraction of the glottal cycle the folds are open: small = pressed voice, large = breathy.
    breathiness : float
        Aspiration noise relative to the voiced source.
    jitter, shimmer : float
        Cycle-to-cycle perturbation of period (relative) and amplitude (log scale).
    tremor_st, tremor_hz : float
        Depth and rate of a vibrato-like pitch tremor.
    creak : float
        Probability that a phrase ends in creaky voice (low, irregular, alternating pulses).
    final_rise_st : float
        Pitch rise over the last half second of speech.
    formant_scale : float
        Articulation: >1 for a smile or open jaw, <1 for a lax, closed mouth.
    """

    pitch_st: float = 0.0
    range_st: float = 3.0
    rate: float = 1.0
    gain_db: float = 0.0
    tilt_db_per_octave: float = -3.0
    open_quotient: float = 0.6
    breathiness: float = 0.06
    jitter: float = 0.006
    shimmer: float = 0.05
    tremor_st: float = 0.0
    tremor_hz: float = 6.0
    creak: float = 0.05
    final_rise_st: float = 0.0
    formant_scale: float = 1.0


# The eight emotions of the bundle, canonical names as the corpus reader should use them.
_EMOTION_PROFILES = {
    "neutral": _EmotionProfile(),
    "calm": _EmotionProfile(
        pitch_st=-1.5, range_st=1.8, rate=0.8, gain_db=-5.0, tilt_db_per_octave=-5.0,
        open_quotient=0.68, breathiness=0.14, jitter=0.005, shimmer=0.04, formant_scale=0.99,
    ),
    "happy": _EmotionProfile(
        pitch_st=4.0, range_st=7.0, rate=1.18, gain_db=4.0, tilt_db_per_octave=-2.0,
        open_quotient=0.52, breathiness=0.05, jitter=0.008, formant_scale=1.05,
    ),
    "sad": _EmotionProfile(
        pitch_st=-2.0, range_st=1.2, rate=0.72, gain_db=-8.0, tilt_db_per_octave=-7.0,
        open_quotient=0.76, breathiness=0.3, jitter=0.012, shimmer=0.08, creak=0.1, formant_scale=0.97,
    ),
    "angry": _EmotionProfile(
        pitch_st=3.0, range_st=5.0, rate=1.22, gain_db=8.0, tilt_db_per_octave=0.5,
        open_quotient=0.38, breathiness=0.02, jitter=0.01, shimmer=0.06, formant_scale=1.04,
    ),
    "fear": _EmotionProfile(
        pitch_st=6.0, range_st=3.0, rate=1.12, gain_db=1.0, tilt_db_per_octave=-3.0,
        open_quotient=0.58, breathiness=0.16, jitter=0.03, shimmer=0.1, tremor_st=1.0, tremor_hz=7.0,
    ),
    "disgust": _EmotionProfile(
        pitch_st=-3.0, range_st=3.5, rate=0.78, gain_db=-1.0, tilt_db_per_octave=-1.5,
        open_quotient=0.45, breathiness=0.05, jitter=0.025, shimmer=0.12, creak=0.7, formant_scale=0.98,
    ),
    "surprise": _EmotionProfile(
        pitch_st=5.0, range_st=9.0, rate=1.0, gain_db=4.0, tilt_db_per_octave=-2.0,
        open_quotient=0.55, breathiness=0.08, jitter=0.008, final_rise_st=7.0, formant_scale=1.03,
    ),
}  # fmt: skip

# Fields an intensity factor scales away from neutral; tremor rate is a rate, not a degree.
_SCALED_FIELDS = tuple(f.name for f in dataclasses.fields(_EmotionProfile) if f.name != "tremor_hz")
# Physiological limits after scaling: a strong emotion must stay a voice.
_PROFILE_LIMITS = {
    "range_st": (0.3, 14.0), "rate": (0.5, 1.8), "open_quotient": (0.3, 0.85), "breathiness": (0.0, 0.6),
    "jitter": (0.0, 0.06), "shimmer": (0.0, 0.25), "tremor_st": (0.0, 2.5), "creak": (0.0, 1.0),
    "formant_scale": (0.9, 1.1),
}  # fmt: skip


def _scale_profile(profile: _EmotionProfile, intensity: float) -> _EmotionProfile:
    """Move ``profile`` ``intensity`` times as far from neutral (1 = as defined, 0 = neutral)."""
    neutral = _EMOTION_PROFILES["neutral"]
    values = {}
    for name in _SCALED_FIELDS:
        # Written as a blend so that intensities 0 and 1 give neutral and the profile exactly.
        value = (1.0 - intensity) * getattr(neutral, name) + intensity * getattr(profile, name)
        low, high = _PROFILE_LIMITS.get(name, (-math.inf, math.inf))
        values[name] = float(min(max(value, low), high))
    return dataclasses.replace(profile, **values)


# ---------------------------------------------------------------------------------------------
# Synthesis
# ---------------------------------------------------------------------------------------------
# Vowel formants F1-F3 of an adult male (Peterson & Barney), Hz; F4 and F5 follow the speaker only.
_VOWEL_FORMANTS = np.array(
    [
        [270, 2290, 3010],  # i
        [390, 1990, 2550],  # I
        [530, 1840, 2480],  # E
        [660, 1720, 2410],  # ae
        [730, 1090, 2440],  # a
        [570, 840, 2410],  # o
        [440, 1020, 2240],  # U
        [300, 870, 2240],  # u
        [640, 1190, 2390],  # V
        [490, 1350, 1690],  # er
    ],
    dtype=float,
)
# Where formants head at a consonant: F1 falls at every closure, F2/F3 towards an alveolar locus.
_CONSONANT_LOCUS = np.array([300.0, 1600.0, 2600.0])
_HIGHER_FORMANTS = np.array([3400.0, 4400.0])
_FORMANT_BANDWIDTHS = np.array([70.0, 100.0, 150.0, 220.0, 300.0])
_FORMANT_AMPLITUDES = np.array([1.0, 0.6, 0.32, 0.18, 0.1])
# Everything is synthesised below 7 kHz, inside the band all four sample rates share (CREMA-D's
# Nyquist frequency is 8 kHz), so that the sample rate of a corpus says nothing about the emotion.
_BAND_EDGE_HZ = 7000.0
_BASE_SYLLABLES_PER_SECOND = 4.5
_BASE_LEVEL_DBFS = -28.0
_PEAK_LIMIT = 0.95
# Synthesis runs at the corpus rate divided by the largest whole factor that keeps it at or above
# 16 kHz (48 kHz -> 16 kHz, 44.1 kHz -> 22.05 kHz), then upsamples by that factor: the content
# lies below 7 kHz anyway, and whole factors keep resampling cheap and exact.
_MIN_SYNTH_RATE = 16000
_FRAME_SECONDS = 0.032  # several pitch periods, short enough for moving formants


class _Syllables(NamedTuple):
    """A phrase plan: one entry per syllable, times in seconds."""

    start: np.ndarray
    end: np.ndarray
    phrase: np.ndarray
    phrase_final: np.ndarray
    stress: np.ndarray
    vowel: np.ndarray
    onset: np.ndarray  # 0 vowel, 1 stop, 2 fricative
    voice_onset: np.ndarray  # seconds from syllable start to the start of voicing


def _plan_syllables(duration: float, syllables_per_second: float, rng: np.random.Generator) -> _Syllables:
    """Lay out phrases, pauses and syllables over ``duration`` seconds."""
    lead, tail = rng.uniform(0.12, 0.3), rng.uniform(0.15, 0.35)
    speech = duration - lead - tail
    n_phrases = 1 + int(speech > 1.6) + int(speech > 2.4 and rng.random() < 0.4)
    # Slow speakers pause longer as well as talking slower.
    slowness = math.sqrt(_BASE_SYLLABLES_PER_SECOND / syllables_per_second)
    pauses = rng.uniform(0.12, 0.28, n_phrases - 1) * slowness
    weights = rng.uniform(0.8, 1.2, n_phrases)
    lengths = weights / weights.sum() * (speech - pauses.sum())
    phrase_starts = lead + np.concatenate([[0.0], np.cumsum(lengths[:-1] + pauses)])

    starts, ends, phrase, final = [], [], [], []
    for i, (p_start, p_len) in enumerate(zip(phrase_starts, lengths)):
        n = max(2, int(round(p_len * syllables_per_second)))
        w = rng.uniform(0.75, 1.25, n)
        w[-1] *= 1.35  # phrase-final lengthening
        bounds = p_start + np.concatenate([[0.0], np.cumsum(w / w.sum() * p_len)])
        starts.append(bounds[:-1])
        ends.append(bounds[1:])
        phrase.append(np.full(n, i))
        final.append(np.arange(n) == n - 1)
    start, end = np.concatenate(starts), np.concatenate(ends)
    n = start.size
    onset = rng.choice(3, size=n, p=[0.3, 0.4, 0.3])
    # Voice onset: a stop's release comes 40-70 ms before voicing, a fricative's hiss 70-120 ms.
    vot = np.select([onset == 1, onset == 2], [rng.uniform(0.04, 0.07, n), rng.uniform(0.07, 0.12, n)], 0.0)
    return _Syllables(
        start=start,
        end=end,
        phrase=np.concatenate(phrase),
        phrase_final=np.concatenate(final),
        stress=(rng.random(n) < 0.4).astype(float),
        vowel=rng.integers(0, len(_VOWEL_FORMANTS), n),
        onset=onset,
        voice_onset=np.minimum(vot, 0.45 * (end - start)),
    )


def _locate(t: np.ndarray, syl: _Syllables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Syllable index, seconds since its start, and whether inside a syllable, for each time in ``t``."""
    idx = np.clip(np.searchsorted(syl.start, t, side="right") - 1, 0, syl.start.size - 1)
    since = t - syl.start[idx]
    inside = (since >= 0) & (t < syl.end[idx])
    return idx, since, inside


def _smooth_noise(n: int, *, knots_per_second: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise that wanders at about ``knots_per_second``, interpolated to ``n`` samples."""
    n_knots = int(n / sr * knots_per_second) + 2
    knots = rng.standard_normal(n_knots)
    return np.interp(np.arange(n) / sr * knots_per_second, np.arange(n_knots), knots)


# Filter designs cost more than filtering a clip: each is made once per rate.
@functools.lru_cache(maxsize=None)
def _bandpass(low_hz: int, high_hz: int, sr: int) -> np.ndarray:
    import scipy.signal

    return scipy.signal.butter(4, (low_hz, high_hz), btype="bandpass", fs=sr, output="sos")


@functools.lru_cache(maxsize=None)
def _lowpass(cutoff_hz: int, sr: int) -> np.ndarray:
    import scipy.signal

    return scipy.signal.butter(2, cutoff_hz, fs=sr, output="sos")


def _upsampling_factor(sr: int) -> int:
    """The largest whole factor ``k`` dividing ``sr`` with ``sr / k`` still at least 16 kHz."""
    return max(k for k in range(1, sr // _MIN_SYNTH_RATE + 1) if sr % k == 0)


def _filter_frames(x: np.ndarray, response, *, sr: int) -> np.ndarray:
    """Filter ``x`` with a response that changes from frame to frame (weighted overlap-add).

    Parameters
    ----------
    x : np.ndarray [shape=(n,)]
        Signal.
    response : callable
        ``response(frame_times, freqs)`` -> magnitude, np.ndarray [shape=(n_frames, n_freqs)].
    sr : int
        Sample rate of ``x``.

    Returns
    -------
    y : np.ndarray [shape=(n,)]
    """
    import scipy.fft

    hop = scipy.fft.next_fast_len(int(round(_FRAME_SECONDS * sr / 2)), real=True)
    frame_length = 2 * hop
    # Periodic sqrt-Hann on analysis and synthesis: the squared windows sum to one at 50% overlap,
    # so an all-pass response gives back ``x`` exactly.
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) / frame_length))
    n = x.size
    n_frames = -(-n // hop) + 1
    padded = np.zeros((n_frames + 1) * hop)
    padded[hop : hop + n] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop] * window
    spectrum = np.fft.rfft(frames, axis=1)
    spectrum *= response(np.arange(n_frames) * hop / sr, np.fft.rfftfreq(frame_length, 1.0 / sr))
    frames = np.fft.irfft(spectrum, n=frame_length, axis=1) * window
    blocks = np.zeros((n_frames + 1, hop))
    blocks[:-1] += frames[:, :hop]
    blocks[1:] += frames[:, hop:]
    return blocks.reshape(-1)[hop : hop + n]


def _synthesize_utterance(
    voice: _VoiceProfile,
    emotion: _EmotionProfile,
    *,
    sr: int,
    duration: float,
    rng: np.random.Generator,
    noise_floor_db: float = -65.0,
) -> np.ndarray:
    """Synthesise one speech-like utterance of ``voice`` speaking with ``emotion``.

    All content lies below 7 kHz, so the same voice gives the same features at every corpus's
    sample rate after the feature pipeline resamples to 22,050 Hz.

    Parameters
    ----------
    voice : _VoiceProfile
        The speaker.
    emotion : _EmotionProfile
        The prosody, relative to the speaker (see :func:`_scale_profile` for intensities).
    sr : int >= 16000
        Output sample rate in Hz.
    duration : float in [1, 10]
        Length in seconds.
    rng : np.random.Generator
        Source of all randomness; the same state gives the same samples.
    noise_floor_db : float
        Level of the room noise under the speech, dBFS.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
        Audio within +-0.95; before, between and after phrases only room noise.
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr < _MIN_SYNTH_RATE:
        raise ValueError(f"sr={sr!r}: expected an integer sample rate of at least {_MIN_SYNTH_RATE} Hz")
    if not 1.0 <= duration <= 10.0:
        raise ValueError(f"duration={duration!r}: expected between 1 and 10 seconds")
    import scipy.signal

    n_out = int(round(duration * sr))
    factor = _upsampling_factor(int(sr))
    sr_in = int(sr) // factor
    n = -(-n_out // factor)
    t = np.arange(n) / sr_in
    syl = _plan_syllables(duration, _BASE_SYLLABLES_PER_SECOND * voice.rate * emotion.rate, rng)
    idx, since, inside = _locate(t, syl)
    length = syl.end - syl.start

    # Amplitude: each syllable swells after its voice onset and fades at its end; the dip between
    # syllables is the consonant closure.
    v_on = syl.voice_onset[idx]
    u = np.clip((since - v_on) / (length[idx] - v_on), 0.0, 1.0)
    voiced = inside & (since >= v_on)
    syllable_gain = (0.65 + 0.35 * syl.stress) * rng.uniform(0.85, 1.1, syl.start.size)
    syllable_gain *= np.where(syl.phrase_final, 0.8, 1.0)
    envelope = np.where(voiced, np.sqrt(np.sin(np.pi * u)) * (1.0 - 0.3 * u), 0.0) * syllable_gain[idx]

    # Pitch, in semitones re the speaker: accents on stressed syllables, declination over each
    # phrase, slow drift, tremor, an optional final rise, creak at the end of some phrases.
    centres = 0.5 * (syl.start + syl.end)
    phrase_start = np.array([syl.start[syl.phrase == p].min() for p in syl.phrase])
    phrase_end = np.array([syl.end[syl.phrase == p].max() for p in syl.phrase])
    progress = (centres - phrase_start) / (phrase_end - phrase_start)
    targets = emotion.range_st * (0.55 * syl.stress + rng.uniform(-0.3, 0.3, syl.start.size) - 0.25)
    targets -= 0.35 * emotion.range_st * (progress - 0.5)
    semitones = emotion.pitch_st + np.interp(t, centres, targets)
    semitones += 0.3 * _smooth_noise(n, knots_per_second=5.0, sr=sr_in, rng=rng)
    if emotion.tremor_st > 0:
        tremor_hz = emotion.tremor_hz * rng.uniform(0.9, 1.1)
        semitones += emotion.tremor_st * np.sin(2 * np.pi * tremor_hz * t + rng.uniform(0, 2 * np.pi))
    semitones += emotion.final_rise_st * np.clip((t - (syl.end[-1] - 0.5)) / 0.5, 0.0, 1.0) ** 2
    creaky_phrases = rng.random(syl.phrase.max() + 1) < emotion.creak
    creak_start = syl.end - 0.4 * length
    creak = inside & syl.phrase_final[idx] & creaky_phrases[syl.phrase[idx]] & (t >= creak_start[idx])
    creak_weight = np.zeros(n)
    if creak.any():
        # Smoothed over ~20 ms so that the pitch glides into vocal fry instead of jumping.
        kernel = np.hanning(int(0.02 * sr_in))
        creak_weight = scipy.signal.oaconvolve(creak.astype(float), kernel / kernel.sum(), mode="same")
    f0 = voice.f0_hz * 2.0 ** (semitones / 12.0) * (1.0 - 0.45 * creak_weight)
    # Jitter: the period changes from one cycle to the next, so the noise is held for one period.
    hold = max(1, int(sr_in / voice.f0_hz))
    jitter = emotion.jitter * (1.0 + 3.0 * creak_weight)
    period_noise = np.repeat(rng.standard_normal(n // hold + 1), hold)[:n]
    f0 = np.clip(f0 * (1.0 + np.clip(jitter * period_noise, -0.3, 0.3)), 40.0, 700.0)

    # Source: the derivative of a Rosenberg glottal pulse (flow rises over 62% of the open phase,
    # falls over 38% and stops abruptly; that closure carries the harmonics).
    cycles = np.cumsum(f0) / sr_in
    phase = cycles % 1.0
    pulse_number = cycles.astype(np.int64)
    oq = emotion.open_quotient
    rise, fall = 0.62 * oq, 0.38 * oq
    pulse = np.where(
        phase < rise,
        np.pi / (2 * rise) * np.sin(np.pi * phase / rise),
        np.where(phase < oq, -np.pi / (2 * fall) * np.sin(0.5 * np.pi * (phase - rise) / fall), 0.0),
    )
    pulse_gain = np.exp(emotion.shimmer * rng.standard_normal(pulse_number[-1] + 1))[pulse_number]
    # Creaky voice alternates strong and weak pulses (diplophonia).
    pulse_gain[creak & (pulse_number % 2 == 1)] *= 0.35
    pulse *= pulse_gain
    pulse /= np.sqrt(np.mean(pulse[voiced] ** 2)) + 1e-12
    # Aspiration is turbulence at the open glottis: white noise differentiated (lip radiation)
    # and louder while the folds are open.
    aspiration = np.diff(rng.standard_normal(n + 1))
    aspiration *= (0.5 + 0.5 * (phase < oq)) / np.std(aspiration)
    breath = voice.breathiness + emotion.breathiness
    excitation = envelope * (pulse + breath * aspiration)

    # Vocal tract: formants glide between vowel targets and consonant loci; the spectral tilt,
    # a low cut at 70 Hz and the band edge shape the whole spectrum.
    scale = voice.formant_scale * emotion.formant_scale
    bandwidths = _FORMANT_BANDWIDTHS * scale * np.array([1.0 + 1.5 * breath, 1.0, 1.0, 1.0, 1.0])
    tilt = voice.tilt_db_per_octave + emotion.tilt_db_per_octave

    def vocal_tract(frame_t: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        f_idx, f_since, f_inside = _locate(frame_t, syl)
        f_u = np.clip(f_since / length[f_idx], 0.0, 1.0)
        closure = np.where(f_inside, (1.0 - np.sin(np.pi * f_u)) ** 2, 1.0)[:, None]
        low = _VOWEL_FORMANTS[syl.vowel[f_idx]] * (1.0 - closure) + _CONSONANT_LOCUS * closure
        formants = np.concatenate([low, np.broadcast_to(_HIGHER_FORMANTS, (frame_t.size, 2))], axis=1) * scale
        f = np.maximum(freqs, 1.0)[None, :, None]
        resonance = 1.0 / np.sqrt(1.0 + ((f**2 - formants[:, None, :] ** 2) / (bandwidths * f)) ** 2)
        shape = 10.0 ** (tilt / 20.0 * np.log2(np.maximum(freqs, 300.0) / 300.0))
        shape /= (1.0 + (freqs / _BAND_EDGE_HZ) ** 8) * (1.0 + (70.0 / np.maximum(freqs, 1.0)) ** 4)
        return (resonance @ _FORMANT_AMPLITUDES + 3e-3) * shape

    speech = _filter_frames(excitation, vocal_tract, sr=sr_in)

    # Consonants: stop bursts just before voicing, fricative noise over the onset, high band.
    before_voice = v_on - since
    burst = inside & (syl.onset[idx] == 1) & (before_voice > 0) & (before_voice < 0.025)
    burst_env = np.where(burst, np.exp(-(0.025 - before_voice) / 0.008), 0.0)
    fricative = inside & (syl.onset[idx] == 2) & (since < v_on + 0.02)
    fric_env = np.where(fricative, np.sin(np.pi * np.clip(since / (v_on + 0.02), 0.0, 1.0)), 0.0)
    low_edge = int(round(min(2500.0 * voice.formant_scale, 3500.0), -2))
    hiss = scipy.signal.sosfilt(_bandpass(low_edge, int(_BAND_EDGE_HZ), sr_in), rng.standard_normal(n))
    active = envelope > 0.1
    speech_rms = np.sqrt(np.mean(speech[active] ** 2)) + 1e-12
    hiss *= speech_rms / (np.std(hiss) + 1e-12)
    speech += hiss * (0.35 * fric_env + 0.6 * burst_env) * syllable_gain[idx]

    # Level: the emotion's loudness is the point, so clips are set to a level, not normalised.
    target_rms = 10.0 ** ((_BASE_LEVEL_DBFS + voice.gain_db + emotion.gain_db) / 20.0)
    speech *= target_rms / (np.sqrt(np.mean(speech[active] ** 2)) + 1e-12)
    room = scipy.signal.sosfilt(_lowpass(4000, sr_in), rng.standard_normal(n))
    speech += room * 10.0 ** (noise_floor_db / 20.0) / (np.std(room) + 1e-12)
    if factor > 1:
        speech = scipy.signal.resample_poly(speech, factor, 1)[:n_out]
    # A soft limiter instead of clipping: loud angry takes saturate gently, as microphones do.
    return (_PEAK_LIMIT * np.tanh(speech / _PEAK_LIMIT)).astype(np.float32)


def _stable_rng(seed: int, *parts: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``parts`` (not on order or on ``hash()`` salt)."""
    key = zlib.crc32("/".join(parts).encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([seed, key]))


def _make_voice(corpus: str, speaker: str, *, female: bool, seed: int, older: bool = False) -> _VoiceProfile:
    """Draw the voice of one speaker from ``seed``; the same speaker always gets the same voice."""
    rng = _stable_rng(seed, "voice", corpus, speaker)
    if female:
        f0 = rng.uniform(165.0, 190.0) if older else rng.uniform(175.0, 245.0)
        formant_scale = rng.uniform(1.12, 1.22)
    else:
        f0 = rng.uniform(92.0, 138.0)
        formant_scale = rng.uniform(0.94, 1.06)
    return _VoiceProfile(
        f0_hz=float(f0),
        formant_scale=float(formant_scale),
        breathiness=float(rng.uniform(0.0, 0.1) + 0.04 * female + 0.05 * older),
        tilt_db_per_octave=float(rng.normal(0.0, 1.0) - 0.8 * older),
        rate=float(rng.uniform(0.9, 1.1) - 0.08 * older),
        gain_db=float(rng.normal(0.0, 1.5)),
    )


# ---------------------------------------------------------------------------------------------
# The corpus plan
# ---------------------------------------------------------------------------------------------
class _Clip(NamedTuple):
    """One file to write: where, at which rate, and what it says."""

    corpus: str
    relpath: str  # POSIX path under the bundle root
    speaker: str
    female: bool
    older: bool
    emotion: str
    intensity: float


def _plan_clips(*, speakers_per_corpus: int, clips_per_emotion: int) -> list[_Clip]:
    """Every file of the demo corpus, sorted by path. The plan does not depend on the seed."""
    clips: list[_Clip] = []

    for s in range(speakers_per_corpus):
        speaker = str(1001 + s)
        for e, (emotion, code) in enumerate(_CREMA_EMOTIONS.items()):
            # Sentences rotate over speakers and emotions, starting from the bundle's first file.
            first = (_CREMA_SENTENCES.index("DFA") + 3 * s + e) % len(_CREMA_SENTENCES)
            for j in range(clips_per_emotion):
                sentence = _CREMA_SENTENCES[(first + j) % len(_CREMA_SENTENCES)]
                level = "XX"
                if sentence == "IEO" and emotion != "neutral":
                    level = _CREMA_LEVELS[(s + e) % len(_CREMA_LEVELS)]
                name = f"Crema/{speaker}_{sentence}_{code}_{level}.wav"
                intensity = _CREMA_LEVEL_INTENSITY[level]
                clips.append(_Clip("CREMA-D", name, speaker, s % 2 == 1, False, emotion, intensity))

    for s in range(min(speakers_per_corpus, _RAVDESS_MAX_ACTORS)):
        actor = f"{s + 1:02d}"
        for emotion, code in _RAVDESS_EMOTIONS.items():
            takes = _RAVDESS_NEUTRAL_TAKES if emotion == "neutral" else _RAVDESS_TAKES
            for intensity, statement, repetition in takes[:clips_per_emotion]:
                name = (
                    f"Ravdess/audio_speech_actors_01-24/Actor_{actor}/"
                    f"03-01-{code}-{intensity}-{statement}-{repetition}-{actor}.wav"
                )
                # Odd actors are male, even actors female.
                female = (s + 1) % 2 == 0
                strength = _RAVDESS_INTENSITY[intensity]
                clips.append(_Clip("RAVDESS", name, actor, female, False, emotion, strength))

    for speaker in _SAVEE_SPEAKERS[:speakers_per_corpus]:
        for emotion, code in _SAVEE_EMOTIONS.items():
            for j in range(clips_per_emotion):
                name = f"Savee/{speaker}_{code}{j + 1:02d}.wav"
                clips.append(_Clip("SAVEE", name, speaker, False, False, emotion, 1.0))

    # TESS has two speakers only; each records more words so that TESS is about as large as the
    # other corpora (the real TESS has 200 words per speaker and emotion).
    words_per_folder = max(clips_per_emotion, math.ceil(clips_per_emotion * speakers_per_corpus / 2))
    for speaker in _TESS_SPEAKERS:
        for emotion, suffix in _TESS_EMOTIONS.items():
            folder = _TESS_FOLDERS[speaker, emotion]
            for word in _TESS_DEMO_WORDS[:words_per_folder]:
                name = f"Tess/{folder}/{speaker}_{word}_{suffix}.wav"
                name = _TESS_QUIRKS.get(name, name)
                clips.append(_Clip("TESS", name, speaker, True, speaker == "OAF", emotion, 1.0))

    return sorted(clips, key=lambda clip: clip.relpath)


# The intensities ser_lib.corpora.parse_path reads from a real name, as the demo renders them.
_NAMED_INTENSITY = {
    "low": _CREMA_LEVEL_INTENSITY["LO"], "medium": _CREMA_LEVEL_INTENSITY["MD"], "high": _CREMA_LEVEL_INTENSITY["HI"],
    "normal": _RAVDESS_INTENSITY["01"], "strong": _RAVDESS_INTENSITY["02"],
}


def _plan_like(files) -> list[_Clip]:
    """One clip per row of a table of bundle files (``path``, ``corpus``, ``speaker``, ``emotion``), sorted by path.

    Gender and intensity are what the corpus reader reads from each name (:func:`ser_lib.corpora.parse_path`);
    CREMA-D's names carry no gender, so its even speakers get the demo's female voices. TESS's OAF is older.
    """
    import pandas as pd

    from ser_lib.corpora import parse_path

    if not isinstance(files, pd.DataFrame):
        files = pd.read_csv(files, dtype=str)
    missing = [column for column in ("path", "corpus", "speaker", "emotion") if column not in files.columns]
    if missing:
        raise ValueError(f"Expected a table of files with columns path, corpus, speaker and emotion, missing {missing}.")
    clips = []
    for path, corpus, speaker, emotion in files[["path", "corpus", "speaker", "emotion"]].itertuples(index=False):
        if corpus not in DEMO_SAMPLE_RATES or emotion not in _EMOTION_PROFILES:
            raise ValueError(f"Cannot make {path!r}: expected a corpus of {sorted(DEMO_SAMPLE_RATES)} and an emotion of "
                             f"{sorted(_EMOTION_PROFILES)}, got {corpus!r} and {emotion!r}.")
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise ValueError(f"Cannot make {path!r}: expected a path relative to the corpus root.")
        try:
            labels = parse_path(path)
        except ValueError as error:
            raise ValueError(f"Cannot make {path!r}: {error}") from error
        female = labels["gender"] == "female" if labels["gender"] else int(labels["speaker"]) % 2 == 0
        intensity = _NAMED_INTENSITY.get(labels["intensity"], 1.0)
        clips.append(_Clip(corpus, Path(path).as_posix(), str(speaker), female, str(speaker) == "OAF", emotion, intensity))
    return sorted(clips, key=lambda clip: clip.relpath)


def _render_clip(clip: _Clip, *, seed: int) -> np.ndarray:
    """The audio of one planned clip; depends only on ``seed`` and the clip itself."""
    voice = _make_voice(clip.corpus, clip.speaker, female=clip.female, older=clip.older, seed=seed)
    rng = _stable_rng(seed, "clip", clip.corpus, clip.relpath)
    # Actors do not hit the same intensity twice; this overlap is what makes the task non-trivial.
    profile = _scale_profile(_EMOTION_PROFILES[clip.emotion], clip.intensity * rng.uniform(0.7, 1.2))
    profile = dataclasses.replace(
        profile,
        pitch_st=profile.pitch_st + rng.normal(0.0, 0.8),
        rate=profile.rate * math.exp(rng.normal(0.0, 0.06)),
        gain_db=profile.gain_db + rng.normal(0.0, 1.5),
        tilt_db_per_octave=profile.tilt_db_per_octave + rng.normal(0.0, 0.8),
    )
    duration = rng.uniform(2.6, 3.2) / math.sqrt(profile.rate * voice.rate)
    duration = min(max(duration, _DURATION_RANGE[0]), _DURATION_RANGE[1])
    sr = DEMO_SAMPLE_RATES[clip.corpus]
    return _synthesize_utterance(
        voice, profile, sr=sr, duration=duration, rng=rng, noise_floor_db=_NOISE_FLOOR_DB[clip.corpus]
    )


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _check_count(name: str, value, low: int, high: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name}={value!r}: expected an integer from {low} to {high} ({why})")


def _read_marker(path: Path) -> dict:
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FileExistsError(
            f"{path} exists but is not a readable demo-corpus marker ({error}); "
            "make_demo_corpus never overwrites existing data: pass an empty or new folder."
        ) from error
    if not isinstance(marker, dict):
        raise FileExistsError(f"{path} exists but is not a demo-corpus marker; pass an empty or new folder.")
    return marker


def _write_atomically(path: Path, data: bytes) -> None:
    """Write through a hidden temporary sibling and rename: a file exists whole or not at all."""
    partial = path.with_name(f".{path.name}{_PARTIAL_SUFFIX}")
    partial.write_bytes(data)
    os.replace(partial, path)


def _write_marker(root: Path, settings: dict, *, n_files: int, complete: bool) -> None:
    marker = {"generator": "ser_lib.demo.make_demo_corpus", **settings}
    marker.update(sample_rates=DEMO_SAMPLE_RATES, n_files=n_files, complete=complete)
    text = json.dumps(marker, indent=2, sort_keys=True) + "\n"
    _write_atomically(root / MARKER_NAME, text.encode("utf-8"))


def make_demo_corpus(
    root,
    *,
    seed: int = 0,
    speakers_per_corpus: int = 4,
    clips_per_emotion: int = 2,
    like=None,
    n_jobs: int = 1,
    progress: bool = False,
) -> Path:
    """Create a synthetic miniature of the Kaggle bundle ``dmitrybabko/speech-emotion-recognition-en``.

    The layout and file names are the bundle's::

        root/Crema/1001_DFA_ANG_XX.wav                                             16,000 Hz
        root/Ravdess/audio_speech_actors_01-24/Actor_01/03-01-05-01-01-01-01.wav   48,000 Hz
        root/Savee/DC_a01.wav                                                      44,100 Hz
        root/Tess/OAF_angry/OAF_back_angry.wav                                     24,414 Hz

    including the bundle's quirks (TESS folders ``OAF_Fear``, ``OAF_Pleasant_surprise``,
    ``YAF_pleasant_surprised``, and the file ``Tess/OAF_neutral/OA_bite_neutral.wav``). All clips
    are mono 16-bit PCM WAV of 2.5-3.5 s. All eight emotions appear: calm only in RAVDESS, surprise
    in RAVDESS, SAVEE and TESS, as in the real corpora.

    Parameters
    ----------
    root : str or Path
        Folder to create the corpus in. It must be missing, empty, or a demo corpus made earlier
        with the same settings (then nothing is rewritten).
    seed : int >= 0
        Seed of every random choice; the same seed and options give byte-identical files.
    speakers_per_corpus : int in [1, 24]
        Speakers of CREMA-D (1001, 1002, ...; odd numbers male) and RAVDESS (Actor_01, ...; odd
        male). SAVEE has 4 speakers and TESS 2, so they use ``min(speakers_per_corpus, 4)`` and
        always 2; TESS records ``ceil(clips_per_emotion * speakers_per_corpus / 2)`` words per
        speaker and emotion to stay about as large as the others.
    clips_per_emotion : int in [1, 8]
        Clips per speaker and emotion. RAVDESS has at most 4 neutral takes per actor.
    like : pd.DataFrame or path of a CSV file, optional
        The files to make instead of the demo's own plan: one clip per row of a table with columns
        ``path`` (relative to ``root``, in the bundle's layout), ``corpus``, ``speaker`` and
        ``emotion``, e.g. the real bundle's list of 12,162 files, for a rehearsal at its size and
        shape. ``speakers_per_corpus`` and ``clips_per_emotion`` are then unused.
    n_jobs : int
        Processes that synthesise the clips (joblib; -1: every core).
    progress : bool
        Show a tqdm progress bar over the files.

    Returns
    -------
    root : Path
        ``Path(root)`` (``~`` expanded), ready for the corpus reader.

    Raises
    ------
    ValueError
        If an option is out of range.
    FileExistsError
        If ``root`` is not empty and is not a demo corpus made with the same settings.

    Notes
    -----
    Files are written under temporary names and renamed when complete; the marker
    ``root/.ser_demo.json`` records the settings and says ``"complete": true`` only once every file
    exists. A run that was interrupted is resumed by calling again with the same settings.

    With the defaults the corpus has 224 clips: CREMA-D 48 (8 per emotion), RAVDESS 64 (8),
    SAVEE 56 (8), TESS 56 (8).
    """
    _check_count("seed", seed, 0, 2**32 - 1, "a non-negative seed")
    _check_count("speakers_per_corpus", speakers_per_corpus, 1, _RAVDESS_MAX_ACTORS, "RAVDESS has 24 actors")
    _check_count("clips_per_emotion", clips_per_emotion, 1, 8, "RAVDESS has 8 takes per actor and emotion")
    root = Path(root).expanduser()
    settings = {
        "version": DEMO_VERSION,
        "seed": int(seed),
        "speakers_per_corpus": int(speakers_per_corpus),
        "clips_per_emotion": int(clips_per_emotion),
    }
    if like is None:
        clips = _plan_clips(
            speakers_per_corpus=settings["speakers_per_corpus"], clips_per_emotion=settings["clips_per_emotion"]
        )
    else:
        clips = _plan_like(like)
        listing = "\n".join("|".join(map(str, clip)) for clip in clips)
        settings.update(speakers_per_corpus=None, clips_per_emotion=None,
                        like=hashlib.sha1(listing.encode("utf-8")).hexdigest()[:12])

    marker_path = root / MARKER_NAME
    if root.exists() and not root.is_dir():
        raise FileExistsError(
            f"root={str(root)!r} is a file: expected a missing or empty folder for the demo corpus."
        )
    if marker_path.exists():
        found = _read_marker(marker_path)
        found_settings = {key: found.get(key) for key in settings}
        if found_settings != settings:
            raise FileExistsError(
                f"{root} already holds a demo corpus made with {found_settings}, but {settings} was "
                "requested. Call again with those settings to reuse it, or pass an empty or new folder."
            )
        if found.get("complete") is True and all((root / clip.relpath).is_file() for clip in clips):
            return root
        # Same settings, unfinished (interrupted, or files deleted since): finish it below.
    elif root.exists():
        entries = sorted(entry.name for entry in root.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (f", ... {len(entries)} in all" if len(entries) > 5 else "")
            raise FileExistsError(
                f"Cannot create the demo corpus in {root}: the folder is not empty ({shown}) and "
                f"holds no demo marker {MARKER_NAME!r}. make_demo_corpus never overwrites existing "
                "data; pass an empty or new folder (for example dataset/demo)."
            )

    from tqdm.auto import tqdm

    root.mkdir(parents=True, exist_ok=True)
    # The marker goes first, marked incomplete, so that an interrupted run is recognised as ours
    # (and resumed) rather than taken for a finished corpus or for a user's folder.
    _write_marker(root, settings, n_files=len(clips), complete=False)
    # Files of an earlier run with these settings are complete (renamed only when written).
    todo = [clip for clip in clips if not (root / clip.relpath).is_file()]
    if n_jobs == 1:
        written = (_write_clip(root, clip, settings["seed"]) for clip in todo)
    else:
        from joblib import Parallel, delayed

        written = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=16)(
            delayed(_write_clip)(root, clip, settings["seed"]) for clip in todo)
    for _ in tqdm(written, total=len(todo), desc="Demo corpus", unit="clip", disable=not progress):
        pass
    _write_marker(root, settings, n_files=len(clips), complete=True)
    return root


def _write_clip(root: Path, clip: _Clip, seed: int) -> None:
    path = root / clip.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    # Encoded in memory: libsndfile syncs every file it closes to disk, which costs more than
    # synthesising the clip.
    buffer = io.BytesIO()
    audio = _render_clip(clip, seed=seed)
    soundfile.write(buffer, audio, DEMO_SAMPLE_RATES[clip.corpus], subtype="PCM_16", format="WAV")
    _write_atomically(path, buffer.getvalue())


def join_clips(paths, out_path, *, pause_seconds: float = 1.5, sr: int = SAMPLE_RATE, overwrite: bool = False) -> Path:
    """Join audio clips into one recording with silent pauses between them, to try long-audio analysis on.

    Parameters
    ----------
    paths : list of str or Path
        Clips to join, in order (read whole, mono, resampled to ``sr``).
    out_path : str or Path
        The WAV file to write.
    pause_seconds : float
        Digital silence before, between and after the clips.
    overwrite : bool
        Replace an existing ``out_path``; without it an existing file is an error.

    Returns
    -------
    out_path : Path
    """
    from ser_lib.audio import load_audio

    out_path, paths = Path(out_path), list(paths)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"'{out_path}' exists: choose another path or pass overwrite=True to replace it.")
    if not paths:
        raise ValueError("Expected at least one clip to join, got none.")
    pause = np.zeros(int(pause_seconds * sr), dtype=np.float32)
    pieces = [pause]
    for path in paths:
        pieces += [load_audio(path, sr=sr, duration=None), pause]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(out_path, np.concatenate(pieces), sr, subtype="PCM_16")
    return out_path
