"""Emotion of audio files from a saved bundle: one clip, a long recording, or many files as a table.

No path imports TensorFlow: the bundle's network runs in NumPy (``ser_lib.model.forward``), loaded
once per folder and kept, so repeated calls pay only for the features.

Files of one voice can be adapted to it (the adaptive mode, :mod:`ser_lib.adapt`): ``predict_many(...,
speakers=)``, ``predict_emotion(..., reference=)``, an enrolled ``speaker`` (:func:`enroll_speaker`);
a long recording's voiced windows are adapted to each other.

A recording that holds a second full window (``duration >= window + hop``) is analysed in
overlapping windows read from disk in blocks, so the audio in memory stays bounded whatever its
length (with an adaptive bundle the voiced windows' features are kept until they are adapted to
each other: 31 KB a window for ``best``, about 75 MB an hour); a shorter
file is a *clip* and is predicted from its first ``window`` seconds, exactly as the original recipe
(and training) did. A recipe trained on whole clips (``best``) reads a file whole, as in training,
up to ``WHOLE_CLIP_MAX_S`` (or ``window + hop`` if longer); longer files are recordings.

The silence gate
----------------
A window whose RMS level is below ``silence_db`` dBFS is *silent*: it gets no features, it is shown
in the timeline and left out of the overall result. The default, -60 dBFS, was measured on real
speech: the 60 clips of each of the 16 RAVDESS development actors concatenated with 2-6 s pauses
(4,517 windows of 3 s, hop 1.5 s; a window is speech if it holds >= 0.25 s of frames within 30 dB of
its clip's loudest frame). Soft speech is quiet in absolute terms there (a 3 s window of calm or sad
speech at normal intensity can be at -63 dBFS), so the gate must be low:

=====================  ===================  ====================  ======================
gate                   speech windows cut   silent windows kept   (with -65 dBFS noise)
=====================  ===================  ====================  ======================
-50 dBFS               19.3 %               0.0 %                 19.4 % / 0.0 %
-55 dBFS               8.3 %                0.05 %                7.2 % / 0.06 %
**-60 dBFS**           **2.7 %**            **0.3 %**             **2.1 % / 0.1 %**
-65 dBFS               1.1 %                1.0 %                 0.0 % / 60 %
40 dB below loudest 1%  3.1 %               0.6 %                 2.4 % / 6.8 %
=====================  ===================  ====================  ======================

A gate relative to the recording's loudest windows did no better and cannot be applied while the file
streams (nor says anything about an all-silent file), so the gate is absolute. The speech windows it
cuts hold a short, soft tail of an utterance. Lower it for recordings made at low gain; raise it for
a noisy room (its noise floor must be below the gate).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path

import numpy as np

from ser_lib import quality
from ser_lib.adapt import SpeakerStatistics
from ser_lib.artifacts import METADATA_FILE, WEIGHTS_FILE, load_bundle
from ser_lib.audio import CLIP_SECONDS, MIN_DURATION, SAMPLE_RATE, AudioError, check_audio_path, load_audio, truncation_warning
from ser_lib.kernels import ensure_kernels, rerun_after_worker_crash
from ser_lib.model import EmotionModel
from ser_lib.recipes import get_recipe
from ser_lib.workers import LostJob, run_jobs

# A long recording's windows: the original recipe's 3 s clip, every 1.5 s; and the silence gate.
WINDOW_SECONDS = CLIP_SECONDS
HOP_SECONDS = 1.5
SILENCE_DB = -60.0
# Whole-clip recipes were trained on corpus clips of up to about 7.5 s (SAVEE), read whole: a file
# up to this long is such a clip and read whole too; a longer one is a recording, read in windows.
WHOLE_CLIP_MAX_S = 10.0
SILENT = "silent"
# Audio read per block of a long recording (native-rate seconds) and windows per parallel job.
_BLOCK_SECONDS = 30.0
_WINDOWS_PER_JOB = 16


@functools.lru_cache(maxsize=8)
def _load_cached(directory: str, stamp: tuple) -> EmotionModel:
    return load_bundle(directory)


def get_model(artifacts_dir="artifacts") -> EmotionModel:
    """The bundle in ``artifacts_dir``, loaded once and reloaded only when its files change."""
    directory = Path(artifacts_dir).expanduser().resolve()
    stamp = tuple((directory / name).stat().st_mtime_ns if (directory / name).exists() else 0 for name in (METADATA_FILE, WEIGHTS_FILE))
    return _load_cached(str(directory), stamp)


class Prediction(tuple):
    """The result of :func:`predict_emotion`: the original ``(emotion, confidence, probabilities)``.

    It *is* that 3-tuple (``emotion, confidence, probabilities = predict_emotion(path)`` and
    ``result[0]`` work as before) and carries more as attributes.

    Attributes
    ----------
    emotion : str or None
        The top class (None when a long recording holds no speech; ``error`` says so).
    confidence : float
        Its probability in percent (0-100).
    probabilities : dict
        Every class's probability (0-1), in the bundle's class order.
    top3 : list of (str, float)
        The three most probable classes with their probabilities (0-1).
    tier : str or None
        ``"high"`` (>= 70 %), ``"medium"`` (40-70 %) or ``"low"`` confidence.
    uncertain : bool
        The top probability is below the bundle's ``abstain_threshold`` (False without one), or the
        input is unlike anything the model trained on (``note`` says how).
    note : str
        What the input's own measures show (:mod:`ser_lib.quality`): e.g. "narrow-band audio",
        "noisy: ~12 dB SNR estimated", "not speech: a steady sound", and which measure lies outside
        the model's training range; "" for an ordinary clip.
    dominance : float
        Share of the non-silent windows whose top class is ``emotion`` (1.0 for a clip).
    distribution : pd.Series
        Class -> mean probability over the non-silent windows (the clip's probabilities for a clip).
    timeline : pd.DataFrame or None
        One row per window (:func:`window_table`: start, end, emotion, confidence, tier, uncertain,
        one column per class, level_db), ``confidence`` and class columns in 0-1 and NaN for
        ``"silent"`` windows; None for a clip.
    duration : float
        Seconds of audio in the file.
    n_windows, n_silent : int
    adapted : bool
        Predicted by the adaptive mode, normalised by other clips of the same voice (``reference``,
        an enrolled ``speaker``, or a long recording's own windows); False: per clip.
    n_clips : int
        Clips (or windows) the voice's statistics came from; 0 without speaker information.
    warning : str or None
        Something to know about the file, though it was predicted: e.g. its header announces more
        audio than it holds (an interrupted download), and how much is missing.
    error : str or None
        Why there is no emotion (no speech above the silence gate), else None.
    """

    def __new__(cls, emotion, confidence, probabilities, **attributes):
        self = super().__new__(cls, (emotion, confidence, probabilities))
        self.__dict__.update(attributes)
        return self

    def __reduce__(self):
        return (_rebuild_prediction, (tuple(self), self.__dict__))

    emotion = property(lambda self: self[0])
    confidence = property(lambda self: self[1])
    probabilities = property(lambda self: self[2])

    def __repr__(self) -> str:
        confidence = f"{self.confidence:.1f}" if np.isfinite(self.confidence) else "nan"
        return (
            f"Prediction(emotion={self.emotion!r}, confidence={confidence}, tier={self.tier!r}, "
            f"uncertain={self.uncertain}, dominance={self.dominance:.2f}, duration={self.duration:.1f}, "
            f"n_windows={self.n_windows}, n_silent={self.n_silent})"
        )

    def plot_timeline(self):
        """The timeline chart (:func:`ser_lib.plots.plot_timeline`); needs a long recording."""
        from ser_lib import plots

        if self.timeline is None:
            raise ValueError(f"No timeline: the file ({self.duration:.1f} s) is one window; pass a longer recording.")
        return plots.plot_timeline(self.timeline, classes=list(self.probabilities))

    def plot_distribution(self, *, title: str | None = None):
        """Each emotion's share of the recording (:func:`ser_lib.plots.plot_emotion_share`)."""
        from ser_lib import plots

        if self.emotion is None:
            raise ValueError(f"No distribution to plot: {self.error}")
        return plots.plot_emotion_share(self.distribution, title=title)


def _rebuild_prediction(values, attributes):
    return Prediction(*values, **attributes)


def predict_emotion(
    path,
    artifacts_dir="artifacts",
    *,
    window: float = WINDOW_SECONDS,
    hop: float = HOP_SECONDS,
    silence_db: float = SILENCE_DB,
    reference=None,
    speaker: str | None = None,
    adapt: bool = True,
    n_jobs: int = 1,
    progress: bool = True,
) -> Prediction:
    """The emotion of an audio file: a clip as in the original usage guide, or a long recording.

    Parameters
    ----------
    path : str or Path
        An audio file soundfile can read (WAV, FLAC, OGG, MP3), any sample rate, any channel count
        (channels are averaged).
    artifacts_dir : str or Path
        A bundle written by the notebook or ``ser train``.
    window, hop : float
        Window length and step in seconds for recordings of at least ``window + hop`` seconds;
        shorter files are one window (the first ``window`` seconds). A whole-clip recipe
        (``best``) reads files of up to ``WHOLE_CLIP_MAX_S`` whole, as it was trained.
    silence_db : float
        Windows of a long recording whose RMS level is below this (dBFS) are silent and left out of
        the overall result (see the module docstring for how -60 was chosen).
    reference : sequence of str or Path, optional
        Other clips of the same voice: the file is normalised by the statistics of them and itself
        (the adaptive mode, :mod:`ser_lib.adapt`), as the bundle's adaptive model was trained. The
        more clips and emotions, the better; with none the file is predicted per clip (a long
        recording adapts to its own windows).
    speaker : str, optional
        An enrolled speaker (:func:`enroll_speaker`) whose stored statistics are used. Not with
        ``reference``.
    adapt : bool
        A long recording is one voice: with an adaptive bundle its voiced windows are normalised by
        their own statistics (and ``reference``'s or ``speaker``'s). On real RAVDESS
        (``benchmarks/adaptive_recordings.py``) window accuracy goes 38.9% -> 51.9% in recordings of
        every emotion, 40.9% -> 37.1% in recordings of only two (ENHANCEMENTS.md). False: every
        window and clip is predicted per clip, as by a model without an adaptive mode.
    n_jobs : int
        Processes for the windows of a long recording (joblib; -1 for every core).
    progress : bool
        A tqdm bar over the windows of a long recording.

    Returns
    -------
    prediction : Prediction
        ``(emotion, confidence in percent, {class: probability})`` with ``top3``, ``tier``,
        ``uncertain``, ``dominance``, ``distribution``, ``timeline`` and more as attributes.
        For a long recording the probabilities are the mean over non-silent windows.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        No file at ``path``, or no bundle (or an incomplete one) in ``artifacts_dir``, or no
        enrolled ``speaker`` of that name.
    AudioError
        The file cannot be decoded, is empty, too short, silent or not finite (a reference clip's
        errors name it).
    ValueError
        Bad ``window``/``hop``, or a bundle made for other features or classes; both ``reference``
        and ``speaker``, or either with ``adapt=False``.
    """
    window, hop = _check_windowing(window, hop)
    model = get_model(artifacts_dir)
    if reference is not None and speaker is not None:
        raise ValueError("Pass reference= (other clips of the voice) or speaker= (an enrolled speaker's name), not both.")
    if not adapt and (reference is not None or speaker is not None):
        raise ValueError("adapt=False predicts per clip: it cannot use reference= or speaker= (drop them, or adapt=True).")
    voice = load_enrolment(artifacts_dir, speaker) if speaker is not None else None
    if reference is not None:
        if isinstance(reference, (str, os.PathLike)):
            raise TypeError(f"reference={reference!r}: expected a list of clips of the same voice, not one path.")
        voice = np.stack([_reference_features(clip, model, window) for clip in reference]) if len(reference) else None
    return _predict_file(path, model, window=window, hop=hop, silence_db=silence_db, n_jobs=n_jobs, progress=progress,
                         voice=voice, adapt=adapt)


def _reference_features(path, model: EmotionModel, window: float) -> np.ndarray:
    try:
        return _clip_features(path, model, window)[0]
    except (OSError, ValueError) as error:
        raise type(error)(f"Reference clip '{path}' cannot be used: {error}") from error


def _check_windowing(window, hop) -> tuple[float, float]:
    window, hop = float(window), float(hop)
    if not (np.isfinite(window) and window >= MIN_DURATION):
        raise ValueError(f"window={window!r} s: expected at least {MIN_DURATION} s (the model was trained on {CLIP_SECONDS:g} s).")
    if not (np.isfinite(hop) and hop > 0):
        raise ValueError(f"hop={hop!r} s: expected a step of more than 0 s, e.g. half the window.")
    return window, hop


def signal_features(model: EmotionModel, signals) -> np.ndarray:
    """The model's recipe's features of mono signals at its sample rate.

    The one path from audio to what a model reads: clips, the windows of a long recording and
    batches all go through it; :meth:`EmotionModel.predict_speakers` then gives the probabilities,
    adapted to the speaker or per clip.

    Parameters
    ----------
    model : EmotionModel
    signals : sequence of np.ndarray [shape=(n,)]

    Returns
    -------
    features : np.ndarray [shape=(len(signals), n_features), dtype=float32]
    """
    recipe = get_recipe(model.recipe)
    return np.stack([recipe.compute(y, sr=recipe.sample_rate) for y in signals])


def signal_rows(model: EmotionModel, signals) -> tuple[np.ndarray, np.ndarray]:
    """:func:`signal_features` and the input measures (:func:`ser_lib.quality.measure`, shape (n, 4)) of signals."""
    sr = get_recipe(model.recipe).sample_rate
    measures = np.array([quality.measure_row(y, sr) for y in signals]).reshape(len(signals), len(quality.MEASURES))
    return signal_features(model, signals), measures


def _clip_features(path, model: EmotionModel, window: float) -> tuple[np.ndarray, float, np.ndarray]:
    """A clip's features, the seconds read (its first ``window`` seconds, or all of it for a whole-clip recipe) and its measures."""
    recipe = get_recipe(model.recipe)
    y = load_audio(path, sr=recipe.sample_rate, duration=_clip_duration(model, window))
    features, measures = signal_rows(model, [y])
    return features[0], y.size / recipe.sample_rate, measures[0]


def _probe(path: Path) -> tuple[float | None, str | None]:
    """Seconds of audio in the file (None if soundfile cannot read it: load_audio will say why), and a warning."""
    import soundfile

    path = check_audio_path(path)
    try:
        info = soundfile.info(str(path))
    except Exception:  # noqa: BLE001 - any failure here is reported by load_audio with its reason
        return None, None
    duration = info.frames / info.samplerate if info.frames > 0 and info.samplerate > 0 else None
    return duration, truncation_warning(info)


def _predict_file(path, model, *, window, hop, silence_db, n_jobs=1, progress=False, voice=None, adapt=True) -> Prediction:
    path = Path(path)
    duration, warning = _probe(path)
    if _is_recording(model, duration, window, hop):
        result = _predict_long(path, model, duration=duration, window=window, hop=hop, silence_db=silence_db,
                               n_jobs=n_jobs, progress=progress, voice=voice, adapt=adapt)
    else:
        clip, seconds_read, measures = _clip_features(path, model, window)
        result = _summarise(model, *_voice_probabilities(model, clip[None, :], voice), measures=measures,
                            conditions=model.recognise(clip), duration=seconds_read if duration is None else duration,
                            timeline=None, n_windows=1, n_silent=0)
    result.__dict__["warning"] = warning
    return result


def _voice_probabilities(model: EmotionModel, rows: np.ndarray, voice) -> tuple[np.ndarray, bool, int]:
    """Probabilities of feature rows of one voice, whether they were adapted, and from how many clips.

    ``voice`` is what is known of it: None (per clip), the feature rows of its *other* clips (the
    statistics are theirs and ``rows``'), or enrolled :class:`SpeakerStatistics`.
    """
    if voice is None or not len(rows) or model.adaptive is None:
        return model.predict_proba(rows) if len(rows) else np.empty((0, len(model.classes))), False, 0
    if not isinstance(voice, SpeakerStatistics):
        voice = model.speaker_statistics(np.concatenate([np.asarray(voice).reshape(-1, rows.shape[1]), rows]))
    probabilities, adapted, n_clips = model.predict_speakers(rows, ["voice"] * len(rows), {"voice": voice})
    return probabilities, bool(adapted[0]), int(n_clips[0])


def _is_recording(model, duration: float | None, window: float, hop: float) -> bool:
    """Whether a file of ``duration`` seconds is analysed in windows rather than as one clip."""
    if duration is None:
        return False
    if _clip_duration(model, window) is None:
        return duration > max(WHOLE_CLIP_MAX_S, window + hop)
    return duration >= window + hop


def _clip_duration(model, window: float) -> float | None:
    """How much of a clip to read, as the recipe was trained: its first ``window`` seconds, or all (None)."""
    return None if get_recipe(model.recipe).clip_seconds is None else window


def _summarise(model, window_probabilities, adapted=False, n_clips=0, *, measures=None, conditions=None, duration,
               timeline, n_windows, n_silent) -> Prediction:
    """The overall result from the non-silent windows' probabilities [shape=(n, n_classes)].

    ``adapted``: they came from the adaptive model (whose abstention threshold and tier floors
    apply), with statistics of ``n_clips`` clips. ``measures``: the input's (:mod:`ser_lib.quality`,
    in the order of ``MEASURES``); outside the bundle's training range, the answer is ``uncertain``.
    ``conditions``: the windows' :meth:`EmotionModel.recognise` probabilities (their mean sets the
    high tier's floor and the note's "sounds like ..."; None: the clean floor).
    """
    import pandas as pd

    classes = list(model.classes)
    if len(window_probabilities) == 0:
        nan = {name: math.nan for name in classes}
        return Prediction(
            None, math.nan, nan, top3=[], tier=None, uncertain=False, dominance=math.nan,
            distribution=pd.Series(nan, name="probability", dtype=float), timeline=timeline, duration=duration,
            n_windows=n_windows, n_silent=n_silent, adapted=False, n_clips=n_clips, warning=None, note="",
            error=f"no speech: all {n_windows} windows are below the silence gate",
        )
    mean = window_probabilities.mean(axis=0)
    best = int(np.argmax(mean))
    order = np.argsort(-mean, kind="stable")
    confidence = float(100 * mean[best])
    return Prediction(
        classes[best], confidence, dict(zip(classes, map(float, mean))),
        top3=[(classes[i], float(mean[i])) for i in order[:3]],
        tier=model.tiers(mean[best], adapted, None if conditions is None else np.mean(conditions, axis=0))[0],
        uncertain=bool(model.uncertain(mean[best], adapted, measures)),
        dominance=float(np.mean(window_probabilities.argmax(axis=1) == best)),
        distribution=pd.Series(mean.astype(float), index=classes, name="probability"),
        timeline=timeline, duration=float(duration), n_windows=n_windows, n_silent=n_silent, adapted=adapted,
        n_clips=n_clips, warning=None, error=None,
        note=model.input_note(measures, conditions),
    )


# ---------------------------------------------------------------------------------------------
# Long recordings
# ---------------------------------------------------------------------------------------------


def window_starts(n_samples: int, window: int, hop: int) -> np.ndarray:
    """Start samples of the windows of a recording: every ``hop``, plus one ending at its end.

    The last regular window can stop short of the end; a final window aligned to the end covers the
    rest when that rest is at least ``MIN_DURATION`` long at 22,050 Hz, so no speech is left out and
    every window has the same length.
    """
    if n_samples < window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_samples - window + 1, hop, dtype=np.int64)
    if n_samples - (starts[-1] + window) >= MIN_DURATION * SAMPLE_RATE:
        starts = np.append(starts, n_samples - window)
    return starts


def resample_stream(native: int, sr: int):
    """A soxr stream from ``native`` to ``sr`` Hz (None when they are equal): chunks of any size in, one signal out."""
    import soxr

    return soxr.ResampleStream(native, sr, 1, dtype="float32", quality="HQ") if native != sr else None


def open_audio(path):
    """The file opened by soundfile, or an :class:`AudioError` saying it cannot be decoded."""
    import soundfile

    path = check_audio_path(path)
    try:
        return soundfile.SoundFile(str(path))
    except Exception as error:  # noqa: BLE001 - soundfile raises LibsndfileError, RuntimeError, ...
        raise AudioError(f"Cannot decode '{path}' as audio ({type(error).__name__}: {error}): "
                         "expected a WAV, FLAC, OGG or MP3 file.") from error


def mono_blocks(path, sr: int | None, seconds: float = _BLOCK_SECONDS):
    """The file as mono float32 blocks of ``seconds`` at ``sr`` (None: its own rate), read and resampled as a stream."""
    with open_audio(path) as handle:
        native = handle.samplerate
        resampler = None if sr is None else resample_stream(native, sr)
        frames = max(1, int(seconds * native))
        while True:
            try:
                block = handle.read(frames=frames, dtype="float32", always_2d=True)
            except Exception as error:  # noqa: BLE001
                raise AudioError(f"Cannot decode '{path}' past {handle.tell() / native:.1f} s "
                                 f"({type(error).__name__}: {error}): the file looks damaged.") from error
            last = len(block) < frames
            # Channels are averaged, as librosa.load(mono=True) does.
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"'{path}' contains NaN or infinite samples: expected finite audio.")
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if mono.size:
                yield mono
            if last:
                return


class Windower:
    """Cuts audio arriving in blocks of any size into the windows of :func:`window_starts`.

    ``push(block)`` returns the ``(start, samples)`` of each window the block completes, regular ones
    every ``hop`` samples; ``finish()`` the window aligned to the end, if the rest after the last
    one needs it. Only what the next windows need is kept (at most ``window + hop`` samples and a block).
    """

    def __init__(self, window: int, hop: int, sr: int):
        self.window, self.hop, self.sr = window, hop, sr
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0  # sample index of buffer[0]
        self.next_start = 0
        self.last_end = 0

    @property
    def n_samples(self) -> int:
        return self.buffer_start + len(self.buffer)

    def push(self, block: np.ndarray) -> list:
        buffer = np.concatenate([self.buffer, np.asarray(block, dtype=np.float32)])
        windows = []
        while self.next_start + self.window <= self.buffer_start + len(buffer):
            offset = self.next_start - self.buffer_start
            windows.append((self.next_start, buffer[offset : offset + self.window]))
            self.last_end = self.next_start + self.window
            self.next_start += self.hop
        # Keep what the next window needs, and the last `window` samples for an end-aligned window.
        keep_from = min(self.next_start, self.buffer_start + len(buffer) - self.window)
        if keep_from > self.buffer_start:
            buffer = buffer[keep_from - self.buffer_start :].copy()
            self.buffer_start = keep_from
        self.buffer = buffer
        return windows

    def finish(self) -> list:
        if self.n_samples - self.last_end >= MIN_DURATION * self.sr and self.n_samples >= self.window:
            return [(self.n_samples - self.window, self.buffer[len(self.buffer) - self.window :])]
        return []


def _windows(path: Path, sr: int, window: int, hop: int):
    """``(start, samples)`` of each window, regular ones while reading, the end-aligned one last."""
    windower = Windower(window, hop, sr)
    for block in mono_blocks(path, sr):
        yield from windower.push(block)
    yield from windower.finish()


def _level_db(samples: np.ndarray) -> float:
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    return 10 * math.log10(power) if power > 0 else -math.inf


def window_table(model: EmotionModel, starts, window: float, probabilities, levels, *, adapted=False, measures=None,
                 conditions=None):
    """The timeline of windows: one row each (start, end, emotion, confidence, tier, uncertain, <classes>, level_db).

    ``starts`` in seconds; ``probabilities`` [shape=(n, n_classes)], NaN rows for silent windows
    (emotion ``"silent"``, confidence NaN, tier None); ``adapted`` (one flag or one per window)
    says which model's abstention threshold and tier floors apply; ``measures`` are the recording's
    [shape=(4,)], or what they were when each window was scored [shape=(n, 4)] (a stream);
    ``conditions`` [shape=(n, n_conditions)] each window's :meth:`EmotionModel.recognise`
    probabilities (NaN rows for silent windows; None: the clean floor of the high tier).
    """
    import pandas as pd

    classes = list(model.classes)
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=float)).reshape(-1, len(classes))
    starts = np.asarray(starts, dtype=float)
    voiced = ~np.isnan(probabilities[:, 0])
    top = np.where(voiced, np.nan_to_num(probabilities, nan=-1.0).argmax(axis=1), -1)
    confidence = np.where(voiced, np.nan_to_num(probabilities, nan=0.0).max(axis=1), np.nan)
    rows = None if measures is None else np.broadcast_to(measures, (len(starts), len(quality.MEASURES)))
    return pd.DataFrame({
        "start": starts,
        "end": starts + window,
        "emotion": [classes[k] if k >= 0 else SILENT for k in top],
        "confidence": confidence,
        "tier": model.tiers(confidence, adapted, conditions),
        "uncertain": voiced & model.uncertain(np.nan_to_num(confidence, nan=1.0), adapted, rows),
        **{name: probabilities[:, k] for k, name in enumerate(classes)},
        "level_db": np.round(np.asarray(levels, dtype=float), 2),
    })


def _predict_long(path, model, *, duration, window, hop, silence_db, n_jobs, progress, voice=None, adapt=True) -> Prediction:
    from tqdm.auto import tqdm

    sr = get_recipe(model.recipe).sample_rate
    window_n, hop_n = int(round(window * sr)), int(round(hop * sr))
    starts, levels, voiced_index = [], [], []

    def jobs():
        # Only voiced windows cost features; they go out in stacks so each job is worth a process.
        stack = []
        for start, samples in _windows(path, sr, window_n, hop_n):
            level = _level_db(samples)
            if level >= silence_db:
                voiced_index.append(len(starts))
                stack.append(samples)
            starts.append(start)
            levels.append(level)
            bar.update(1)
            if len(stack) == _WINDOWS_PER_JOB:
                yield np.stack(stack)
                stack = []
        if stack:
            yield np.stack(stack)

    expected = len(window_starts(int(round(duration * sr)), window_n, hop_n))
    with tqdm(total=expected, desc=f"Windows of {path.name}", unit="window", disable=not progress, leave=False) as bar:
        if n_jobs == 1:
            results = [signal_rows(model, stack) for stack in jobs()]
        else:
            from joblib import Parallel, delayed

            runner = Parallel(n_jobs=n_jobs, return_as="generator", pre_dispatch="2*n_jobs")
            results = list(runner(delayed(signal_rows)(model, stack) for stack in jobs()))
    rows = np.concatenate([r for r, _ in results]) if results else np.empty((0, model.n_features), dtype=np.float32)
    measures = quality.recording_measures(np.concatenate([m for _, m in results])) if results else None
    # One voice: its windows are clips of it, with the other clips the caller knows of.
    if voice is None and adapt:
        voice = rows[:0]
    voiced, adapted, n_clips = _voice_probabilities(model, rows, voice)
    n = len(starts)
    probabilities = np.full((n, len(model.classes)), np.nan)
    probabilities[voiced_index] = voiced
    recognised, conditions = model.recognise(rows), None
    if recognised is not None:
        conditions = np.full((n, recognised.shape[1]), np.nan)
        conditions[voiced_index] = recognised
    timeline = window_table(model, np.asarray(starts) / sr, window_n / sr, probabilities, levels, adapted=adapted,
                            measures=measures, conditions=conditions)
    result = _summarise(model, voiced, adapted, n_clips, measures=measures, conditions=recognised, duration=duration,
                        timeline=timeline, n_windows=n, n_silent=n - len(voiced_index))
    if result.error:
        result.__dict__["error"] = f"{result.error} ({silence_db:g} dBFS): the loudest window is at {max(levels):.1f} dBFS"
    return result


# ---------------------------------------------------------------------------------------------
# Many files
# ---------------------------------------------------------------------------------------------


def _clip_features_worker(paths, artifacts_dir, window):
    """Features, seconds read and measures (or the reason there are none) of a batch of clips; runs in worker processes."""
    model = get_model(artifacts_dir)
    out = []
    for path in paths:
        try:
            out.append((*_clip_features(path, model, window), None))
        except (OSError, ValueError) as error:
            out.append((None, None, None, str(error)))
    return out


def _clips_features(paths: list, artifacts_dir, window: float, *, n_jobs: int, bar, scheduler: str | None = None) -> list:
    """``(features, seconds read, measures, None)`` or ``(None, None, None, reason)`` of each clip, in batches over ``n_jobs`` processes or a cluster."""
    # Up to 8 clips per job amortise the call; fewer when there are few, so every worker gets work.
    workers = 1 if n_jobs == 1 else (os.cpu_count() or 1) if n_jobs < 0 else n_jobs
    size = max(1, min(8, len(paths) // (4 * workers)))
    batches = [paths[i : i + size] for i in range(0, len(paths), size)]
    results: list = [None] * len(paths)

    def run():
        jobs = [(batch, str(artifacts_dir), window) for batch in batches]
        for index, output in run_jobs(_clip_features_worker, jobs, n_jobs=n_jobs, scheduler=scheduler, name="predict_many"):
            if isinstance(output, LostJob):
                output = [(None, None, None, output.reason)] * len(batches[index])
            results[index * size : index * size + len(output)] = output
            bar.update(len(output))

    rerun_after_worker_crash(run, what="prediction")
    return results


def predict_many(
    paths,
    artifacts_dir="artifacts",
    *,
    speakers=None,
    speaker: str | None = None,
    window: float = WINDOW_SECONDS,
    hop: float = HOP_SECONDS,
    silence_db: float = SILENCE_DB,
    n_jobs: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    return_timeline: bool = False,
):
    """Predictions for many files; a file that cannot be read gets its reason, the rest go on.

    Clips are predicted in parallel batches (``n_jobs`` processes, or the workers of a Dask cluster
    at the address ``scheduler``, which must reach the files and ``artifacts_dir``: :mod:`ser_lib.workers`);
    long recordings here, one after the other, each with its windows in parallel.

    Parameters
    ----------
    speakers : sequence, optional
        One speaker id per path (None for a file of unknown voice). Each speaker's clips are
        normalised by their own statistics (the adaptive mode, :mod:`ser_lib.adapt`; a speaker with
        one clip is predicted per clip); a long recording by its windows' and its speaker's clips'.
    speaker : str, optional
        Every file is the voice of this enrolled speaker (:func:`enroll_speaker`): its stored
        statistics are used. Not with ``speakers``.

    Returns
    -------
    table : pd.DataFrame [columns: path, emotion, confidence, <one per class>, tier, uncertain, note, warning, error]
        One row per input path in input order; ``confidence`` in percent, class columns hold
        probabilities (0-1), ``tier`` high/medium/low, ``uncertain`` True when the top probability
        is under the abstain threshold (the adaptive mode's for an adapted row) or the input is
        unlike the training clips, ``note`` what its measures show (:mod:`ser_lib.quality`); ``warning`` says
        what to know about a predicted file (e.g. truncated: how much of the announced audio is
        missing); ``error`` is empty for files that were predicted. With ``speakers`` or
        ``speaker``, also ``speaker`` (after ``path``), ``adapted`` and ``n_clips`` (the clips its
        speaker's statistics came from) after ``uncertain``.
    timeline : pd.DataFrame [columns: path, start, end, emotion, confidence, tier, uncertain, <one per class>, level_db]
        Only with ``return_timeline``: one row per window of each predicted file (one row for a
        clip); ``confidence`` and class columns in 0-1.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    window, hop = _check_windowing(window, hop)
    model = get_model(artifacts_dir)
    classes = list(model.classes)
    paths = [str(p) for p in paths]
    file_speakers = _file_speakers(paths, speakers, speaker)
    enrolled = {speaker: load_enrolment(artifacts_dir, speaker)} if speaker is not None else None
    if file_speakers is not None and model.adaptive is None:
        warnings.warn(f"The bundle in '{artifacts_dir}' has no adaptive mode (it was trained before ser_lib had one): "
                      "every file is predicted per clip. Retrain it to adapt to speakers.", stacklevel=2)
    results: list = [None] * len(paths)
    durations, file_warnings = [None] * len(paths), [None] * len(paths)
    clips, long = [], []
    for index, path in enumerate(paths):
        try:
            durations[index], file_warnings[index] = _probe(Path(path))
        except OSError as error:
            results[index] = str(error)
            continue
        (long if _is_recording(model, durations[index], window, hop) else clips).append(index)

    if clips or long:
        ensure_kernels()  # checked here once, before any worker starts (see ser_lib.kernels)
    with tqdm(total=len(paths), desc="Predict", unit="file", disable=not progress) as bar:
        bar.update(len(paths) - len(clips) - len(long))
        features, seconds, measures = {}, {}, {}
        for index, (row, duration, measured, reason) in zip(clips, _clips_features([paths[i] for i in clips], artifacts_dir,
                                                                                   window, n_jobs=n_jobs,
                                                                                   scheduler=scheduler, bar=bar)):
            if row is None:
                results[index] = reason
            else:
                features[index], seconds[index], measures[index] = row, duration, measured
        # Each speaker's clips adapted to each other (or to the enrolled statistics); the rest per clip.
        done = sorted(features)
        ids = [None if file_speakers is None else file_speakers[i] for i in done]
        rows = np.stack([features[i] for i in done]) if done else np.empty((0, model.n_features), dtype=np.float32)
        probabilities, adapted, n_clips = model.predict_speakers(rows, ids, enrolled)
        recognised = model.recognise(rows) if len(rows) else None
        for k, index in enumerate(done):
            results[index] = _summarise(model, probabilities[k : k + 1], bool(adapted[k]), int(n_clips[k]),
                                        measures=measures[index], conditions=None if recognised is None else recognised[k : k + 1],
                                        duration=seconds[index], timeline=None, n_windows=1,
                                        n_silent=0)
        for index in long:
            own = None if file_speakers is None else file_speakers[index]
            voice = None if own is None else enrolled[own] if enrolled else rows[[i == own for i in ids]]
            try:
                results[index] = _predict_long(Path(paths[index]), model, duration=durations[index],
                                               window=window, hop=hop, silence_db=silence_db, n_jobs=n_jobs,
                                               progress=progress, voice=voice)
            except (OSError, ValueError) as error:
                results[index] = str(error)
            bar.update(1)

    table_rows, timelines = [], []
    for index, (path, result, warning) in enumerate(zip(paths, results, file_warnings)):
        row = {"path": path, "emotion": None, "confidence": math.nan, **dict.fromkeys(classes, math.nan),
               "tier": None, "uncertain": False, "note": "", "adapted": False, "n_clips": 0, "warning": warning or "",
               "error": ""}
        if file_speakers is not None:
            row["speaker"] = file_speakers[index]
        if isinstance(result, str):
            row["error"] = result
        else:
            row.update(emotion=result.emotion, confidence=result.confidence, **result.probabilities,
                       tier=result.tier, uncertain=result.uncertain, note=result.note, adapted=result.adapted,
                       n_clips=result.n_clips, error=result.error or "")
            if return_timeline:
                timelines.append(_file_timeline(path, result, window))
        table_rows.append(row)
    speaker_columns = (["speaker"], ["adapted", "n_clips"]) if file_speakers is not None else ([], [])
    columns = ["path", *speaker_columns[0], "emotion", "confidence", *classes, "tier", "uncertain", "note",
               *speaker_columns[1], "warning", "error"]
    table = pd.DataFrame(table_rows, columns=columns)
    if not return_timeline:
        return table
    # window_table's columns, whatever they are, with the file's path first.
    columns = ["path", *window_table(model, [], window, np.empty((0, len(classes))), []).columns]
    timeline = pd.concat(timelines, ignore_index=True)[columns] if timelines else pd.DataFrame(columns=columns)
    return table, timeline


def _file_speakers(paths: list, speakers, speaker) -> list | None:
    """The speaker of each file (None: unknown), or None without speaker information."""
    if speakers is not None and speaker is not None:
        raise ValueError("Pass speakers= (one speaker id per file) or speaker= (an enrolled speaker's name), not both.")
    if speaker is not None:
        return [speaker] * len(paths)
    if speakers is None:
        return None
    speakers = [None if s is None or (isinstance(s, float) and math.isnan(s)) or s == "" else str(s) for s in speakers]
    if len(speakers) != len(paths):
        raise ValueError(f"Expected one speaker per file ({len(paths)} files), got {len(speakers)} speakers.")
    return speakers


def _file_timeline(path: str, result: Prediction, window: float):
    import pandas as pd

    if result.timeline is not None:
        return result.timeline.assign(path=path)
    return pd.DataFrame([{
        "path": path, "start": 0.0, "end": min(result.duration, window), "emotion": result.emotion,
        "confidence": result.confidence / 100, "tier": result.tier, "uncertain": result.uncertain, **result.probabilities,
        "level_db": math.nan,
    }])


# ---------------------------------------------------------------------------------------------
# Enrolment
# ---------------------------------------------------------------------------------------------


def enroll_speaker(name: str, paths, artifacts_dir="artifacts", *, overwrite: bool = False, n_jobs: int = 1,
                   progress: bool = True):
    """Store a speaker's statistics beside a bundle, for predicting that voice one clip at a time.

    The features of ``paths`` (clips of the speaker, of as many emotions as there are: clips of one
    mood bias the statistics, though shrinkage and the estimated emotion shares limit it) are
    summarised as their mean, variance and estimated emotion shares and written to
    ``artifacts_dir/speakers/NAME.npz`` as plain arrays. ``predict_emotion(path,
    speaker=NAME)``, ``predict_many(paths, speaker=NAME)`` and ``ser predict --speaker NAME`` use them.

    Returns
    -------
    path : Path
        The file written.
    table : pd.DataFrame [columns: path, used, error]
        Each input file, whether its features were used, and why not (unreadable, or a long
        recording: enrol with clips of it).

    Raises
    ------
    ValueError
        A bad name, fewer than ``MIN_CLIPS`` usable clips, or a bundle without an adaptive mode.
    FileExistsError
        The speaker is enrolled already and ``overwrite`` is False.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from ser_lib.adapt import MIN_CLIPS, enrolment_path, save_statistics

    target = enrolment_path(artifacts_dir, name)
    model = get_model(artifacts_dir)
    if model.adaptive is None:
        raise ValueError(f"The bundle in '{artifacts_dir}' has no adaptive mode (it was trained before ser_lib had one): "
                         "retrain it to enrol speakers.")
    if target.exists() and not overwrite:
        raise FileExistsError(f"Speaker {name!r} is enrolled already ('{target}'): pass overwrite=True "
                              "(`ser enroll --force`) to replace the statistics.")
    paths = [str(p) for p in paths]
    reasons = {}
    clips = []
    for path in paths:
        try:
            duration, _ = _probe(Path(path))
        except OSError as error:
            reasons[path] = str(error)
            continue
        if _is_recording(model, duration, WINDOW_SECONDS, HOP_SECONDS):
            reasons[path] = f"a recording of {duration:.1f} s: enrol with clips (one utterance each) of the speaker"
        else:
            clips.append(path)
    if clips:
        ensure_kernels()
    with tqdm(total=len(clips), desc=f"Enrol {name}", unit="clip", disable=not progress) as bar:
        outputs = _clips_features(clips, artifacts_dir, WINDOW_SECONDS, n_jobs=n_jobs, bar=bar)
    rows = []
    for path, (row, _, _, reason) in zip(clips, outputs):
        if row is None:
            reasons[path] = reason
        else:
            rows.append(row)
    table = pd.DataFrame({"path": paths, "used": [p not in reasons for p in paths], "error": [reasons.get(p, "") for p in paths]})
    if len(rows) < MIN_CLIPS:
        raise ValueError(f"Enrolling {name!r} needs at least {MIN_CLIPS} readable clips, got {len(rows)} of {len(paths)}"
                         + (f" ({'; '.join(f'{p}: {r}' for p, r in reasons.items())})" if reasons else "") + ".")
    statistics = model.speaker_statistics(np.stack(rows))
    used = table.loc[table["used"], "path"].tolist()
    return save_statistics(target, statistics, recipe=model.recipe, clips=used), table


def load_enrolment(artifacts_dir, name: str) -> SpeakerStatistics:
    """An enrolled speaker's statistics (:func:`enroll_speaker`), checked to fit the bundle's features."""
    from ser_lib.adapt import ENROLMENT_DIR, enrolment_path, load_statistics

    path = enrolment_path(artifacts_dir, name)
    if not path.is_file():
        enrolled = sorted(p.stem for p in (Path(artifacts_dir) / ENROLMENT_DIR).glob("*.npz"))
        raise FileNotFoundError(f"No speaker {name!r} is enrolled in '{artifacts_dir}' (enrolled: {enrolled or 'none'}): "
                                f"enrol with `ser enroll {name} CLIPS... --artifacts {artifacts_dir}`.")
    return load_statistics(path, recipe=get_model(artifacts_dir).recipe)
