"""Live: the emotion of audio as it arrives, window by window, adapting to the voice as it speaks.

:class:`EmotionStream` takes chunks of any size (a microphone's, a network's) and scores each window
as soon as it is complete: the 3 s windows every 1.5 s, the silence gate, the calibration, tiers and
``uncertain`` of :func:`ser_lib.predict_emotion` on a long recording. With adaptation off it gives
the windows and probabilities ``predict_emotion(path, adapt=False)`` gives for the whole file.

With adaptation on (and an adaptive bundle), the stream is one voice heard so far: each voiced window
adds to that voice's statistics (:class:`ser_lib.adapt.RunningStatistics`: count, mean and variance
in constant memory, and the emotion shares of the windows heard) and is predicted adapted to them,
shrunk toward the training population by how many windows there are, as clips are
(:func:`ser_lib.adapt.adapt`). It can start from an enrolled speaker (``speaker=``). Unlike a file,
a window is never rescored once later windows are heard: what was shown stays as shown.

Memory stays flat: the stream keeps at most a window, a hop and a chunk of audio, the voice's statistics,
and per window its probabilities, level and input measures (``benchmarks/bench_stream.py``: +0.8 MB from
the 5th to the 60th minute of a stream).

:class:`Microphone` reads the default input device through ``sounddevice`` (``pip install
'ser_lib[live]'``); ``ser listen`` puts the two together.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from ser_lib import quality
from ser_lib.adapt import MIN_CLIPS, RunningStatistics, adapt
from ser_lib.audio import AudioError
from ser_lib.kernels import ensure_kernels
from ser_lib.predict import (
    HOP_SECONDS, SILENCE_DB, WINDOW_SECONDS, Prediction, Windower, _check_windowing, _level_db, _summarise,
    get_model, load_enrolment, mono_blocks, open_audio, resample_stream, signal_rows, window_table,
)
from ser_lib.recipes import get_recipe


class EmotionStream:
    """The emotion of a live stream of audio, one window at a time.

    Parameters
    ----------
    artifacts_dir : str or Path
        A bundle written by the notebook or ``ser train``.
    sr : int
        The sample rate of the samples fed (any; they are resampled to the recipe's as they come).
    window, hop, silence_db : float
        As :func:`ser_lib.predict_emotion` for a long recording.
    adapt : bool
        Adapt each window to the voice heard so far (an adaptive bundle only; otherwise per window).
    speaker : str, optional
        An enrolled speaker (:func:`ser_lib.enroll_speaker`) to start from; needs ``adapt``.

    Examples
    --------
    >>> stream = EmotionStream("artifacts", sr=16000)
    >>> for chunk in chunks:                      # doctest: +SKIP
    ...     for window in stream.feed(chunk).itertuples():
    ...         print(window.start, window.emotion, window.confidence)
    >>> summary = stream.close()                  # doctest: +SKIP
    """

    def __init__(self, artifacts_dir="artifacts", *, sr: int, window: float = WINDOW_SECONDS, hop: float = HOP_SECONDS,
                 silence_db: float = SILENCE_DB, adapt: bool = True, speaker: str | None = None):
        window, hop = _check_windowing(window, hop)
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise ValueError(f"sr={sr!r}: expected the sample rate of the samples fed, a positive integer in Hz (e.g. 16000).")
        if speaker is not None and not adapt:
            raise ValueError("speaker= starts the voice's statistics from an enrolled speaker: it needs adapt=True.")
        self.model = get_model(artifacts_dir)
        ensure_kernels()
        self.sr, self.silence_db = int(sr), float(silence_db)
        self._rate = get_recipe(self.model.recipe).sample_rate
        self._resampler = resample_stream(self.sr, self._rate)
        self._windower = Windower(int(round(window * self._rate)), int(round(hop * self._rate)), self._rate)
        self._window_seconds = self._windower.window / self._rate
        start = load_enrolment(artifacts_dir, speaker) if speaker is not None else None
        self._voice = None
        if adapt and self.model.adaptive is not None:
            self._voice = RunningStatistics(self.model.n_features, len(self.model.classes), start,
                                            typical_mix=self.model.prior.typical_mix)
        self._heard_conditions = 0.0  # the sum of the voiced windows' recording-condition probabilities
        self._heard = 0
        self._closed = False
        # One record per window: start (s), level (dBFS), probabilities (NaN when silent), adapted, n_clips, heard (s),
        # the recording's input measures so far (what its `uncertain` was judged by when it was shown) and the window's
        # recording-condition probabilities (EmotionModel.recognise; NaN when silent, none without a recogniser).
        self._windows: list[tuple] = []
        self._measures = []  # of the voiced windows, for the recording's measures so far
        self._empty = None  # the table of no window, made once

    @property
    def heard(self) -> float:
        """Seconds of audio fed so far."""
        return self._heard / self.sr

    def feed(self, samples):
        """Score the windows these samples complete.

        Parameters
        ----------
        samples : np.ndarray [shape=(n,) or (n, channels)]
            Float samples in [-1, 1] at ``sr`` (channels are averaged), any number of them.

        Returns
        -------
        windows : pd.DataFrame
            One row per window completed (often none): the columns of a recording's timeline
            (:func:`ser_lib.predict.window_table`) and ``adapted``, ``n_clips``, ``heard``.
        """
        if self._closed:
            raise ValueError("This stream is closed: start a new EmotionStream to go on.")
        mono = self._checked(samples)
        self._heard += len(mono)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=False)
        return self._score(self._windower.push(mono))

    def close(self) -> Prediction:
        """Flush the last windows and return the summary of the whole stream.

        Returns
        -------
        summary : Prediction
            As :func:`ser_lib.predict_emotion` for a recording: the mean over the voiced windows
            as they were scored, the timeline of every window (with ``adapted``, ``n_clips`` and
            ``heard``); ``adapted`` and ``n_clips`` say what the voice's statistics held at the end.
        """
        if self._closed:
            raise ValueError("This stream is closed already.")
        tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True) if self._resampler else None
        windows = self._windower.push(tail) if tail is not None and tail.size else []
        self._score(windows + self._windower.finish())
        self._closed = True
        timeline = self._table(0)
        voiced = timeline["emotion"] != "silent"
        probabilities = timeline.loc[voiced, list(self.model.classes)].to_numpy()
        adapted = bool(timeline.loc[voiced, "adapted"].iloc[-1]) if voiced.any() else False
        n_clips = 0 if self._voice is None else self._voice.n
        conditions = None
        if self.model.recogniser is not None:
            conditions = np.array([w[-1] for w in self._windows]).reshape(-1, len(self.model.conditions))[voiced.to_numpy()]
        result = _summarise(self.model, probabilities, adapted, n_clips, measures=self._recording_measures(),
                            conditions=conditions, duration=self.heard, timeline=timeline, n_windows=len(timeline),
                            n_silent=int((~voiced).sum()))
        if result.error and len(timeline):
            result.__dict__["error"] = (f"{result.error} ({self.silence_db:g} dBFS): the loudest window is at "
                                        f"{timeline['level_db'].max():.1f} dBFS")
        elif not len(timeline):
            result.__dict__["error"] = (f"no window: {self.heard:.2f} s of audio heard, a window is "
                                        f"{self._window_seconds:g} s")
        result.__dict__["warning"] = None
        return result

    def _checked(self, samples) -> np.ndarray:
        samples = np.asarray(samples)
        if samples.dtype.kind != "f":
            raise TypeError(f"Expected float samples in [-1, 1] (e.g. sounddevice's float32), got dtype {samples.dtype}: "
                            "divide 16-bit integers by 32768.")
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        elif samples.ndim != 1:
            raise ValueError(f"Expected samples of shape (n,) or (n, channels), got shape {samples.shape}.")
        if not np.all(np.isfinite(samples)):
            raise AudioError("The samples fed contain NaN or infinite values: expected finite audio.")
        return samples.astype(np.float32, copy=False)

    def _score(self, windows: list):
        first = len(self._windows)
        for start, samples in windows:
            level = _level_db(samples)
            probabilities, adapted, n_clips = np.full(len(self.model.classes), np.nan), False, 0
            conditions = np.full(len(self.model.conditions), np.nan)
            if level >= self.silence_db:
                features, measures = signal_rows(self.model, [samples])
                self._measures.append(measures[0])
                if self.model.recogniser is not None:
                    conditions = self.model.recognise(features)[0]
                probabilities, adapted, n_clips = self._predict(features, conditions)
            so_far = self._recording_measures()
            so_far = np.full(len(quality.MEASURES), np.nan) if so_far is None else so_far
            self._windows.append((start / self._rate, level, probabilities, adapted, n_clips, self.heard, so_far, conditions))
        return self._table(first)

    def _recording_measures(self) -> np.ndarray | None:
        """The recording's input measures (:func:`ser_lib.quality.recording_measures`) from the voiced windows so far."""
        return quality.recording_measures(np.array(self._measures)) if self._measures else None

    def _predict(self, features: np.ndarray, conditions: np.ndarray) -> tuple[np.ndarray, bool, int]:
        """One voiced window's probabilities, whether adapted, and the windows its voice's statistics held.

        ``conditions``: the window's :meth:`EmotionModel.recognise` probabilities (empty without a recogniser).
        """
        model, voice = self.model, self._voice
        if voice is None:
            return model.predict_proba(features)[0], False, 0
        voice.add(features[0])
        statistics = voice.statistics()  # the emotion shares of the windows before this one
        # This window's emotion shares, as estimate_mix takes them: the adaptive model's, uncalibrated.
        voice.add_shares(model.adaptive.predict_proba_uncalibrated(adapt(features, statistics, model.prior))[0])
        recognised = model.recogniser is not None
        if recognised:  # the voice's recording condition so far (EmotionModel.recognised_condition)
            self._heard_conditions = self._heard_conditions + conditions
        if voice.n < MIN_CLIPS:
            return model.predict_proba(features)[0], False, voice.n
        typical = recognised and model.condition_of(self._heard_conditions) in model.typical_shares
        statistics.mix = None if typical else voice.statistics().mix  # as EmotionModel.speaker_statistics
        adapted = adapt(features, statistics, model.prior)
        return (model.adaptive.predict_proba(adapted, np.array([voice.n]), conditions[None, :] if recognised else None)[0],
                True, voice.n)

    def _table(self, first: int):
        if first == len(self._windows) and self._empty is not None:
            return self._empty.copy()  # most chunks complete no window: skip building a table
        starts, levels, probabilities, adapted, n_clips, heard, measures, conditions = map(
            list, list(zip(*self._windows[first:])) or [()] * 8)
        recognised = np.array(conditions).reshape(-1, len(self.model.conditions)) if self.model.recogniser is not None else None
        table = window_table(self.model, starts, self._window_seconds, np.array(probabilities).reshape(-1, len(self.model.classes)),
                             levels, adapted=np.array(adapted, dtype=bool),
                             measures=np.array(measures).reshape(-1, len(quality.MEASURES)), conditions=recognised)
        table = table.assign(adapted=adapted, n_clips=n_clips, heard=heard)
        if self._empty is None and not len(table):
            self._empty = table
        return table


def replay(path, artifacts_dir="artifacts", *, chunk_seconds: float = 0.1, **options) -> Prediction:
    """A recording fed to an :class:`EmotionStream` in chunks of ``chunk_seconds``, as a microphone would.

    ``options`` go to :class:`EmotionStream` (``adapt``, ``speaker``, ``window``, ...). Returns its
    summary; the timeline's ``heard`` column says how far into the recording each window was scored.
    """
    if not (np.isfinite(chunk_seconds) and chunk_seconds > 0):
        raise ValueError(f"chunk_seconds={chunk_seconds!r}: expected a positive number of seconds, e.g. 0.1.")
    with open_audio(path) as handle:
        sr = handle.samplerate
    stream = EmotionStream(artifacts_dir, sr=sr, **options)
    for chunk in mono_blocks(path, None, seconds=chunk_seconds):
        stream.feed(chunk)
    return stream.close()


class Microphone:
    """Chunks of audio from an input device, through ``sounddevice`` (``pip install 'ser_lib[live]'``).

    :meth:`chunks` opens the device and yields float32 mono chunks of ``chunk_seconds`` until ``stop``
    is set, then those already captured. ``overflows`` counts chunks the device reported lost because
    they were not read in time (the machine could not keep up).

    Raises
    ------
    ImportError
        ``sounddevice`` (or the PortAudio library it loads) is not installed.
    OSError
        No input device (or no such ``device``).
    """

    def __init__(self, device=None, *, sr: int | None = None, chunk_seconds: float = 0.1):
        try:
            import sounddevice
        except ImportError as error:
            raise ImportError("Listening needs the sounddevice package: pip install 'ser_lib[live]'.") from error
        except OSError as error:  # sounddevice is there, the PortAudio library it loads is not
            raise ImportError(f"sounddevice cannot load PortAudio ({error}): install it (e.g. apt install libportaudio2).") from error
        self._sounddevice = sounddevice
        try:
            info = sounddevice.query_devices(device, kind="input")
        except Exception as error:  # noqa: BLE001 - PortAudioError, ValueError: no such device
            raise OSError(f"No microphone: {error} (sounddevice lists the devices: python -m sounddevice).") from error
        self.device, self.name = device, info["name"]
        self.sr = int(sr or info["default_samplerate"])
        self.chunk_seconds = chunk_seconds
        self.overflows = 0

    def chunks(self, stop: threading.Event):
        captured: queue.Queue = queue.Queue()

        def callback(indata, frames, time, status):
            if status.input_overflow:
                self.overflows += 1
            captured.put(indata[:, 0].copy())

        with self._sounddevice.InputStream(samplerate=self.sr, device=self.device, channels=1, dtype="float32",
                                           blocksize=max(1, int(self.chunk_seconds * self.sr)), callback=callback):
            while not stop.is_set():
                try:
                    yield captured.get(timeout=0.1)
                except queue.Empty:
                    continue
        while not captured.empty():  # what was heard before stopping is analysed too
            yield captured.get()


def window_line(window) -> str:
    """One window as ``ser listen`` prints it: time, emotion, confidence and tier (and uncertain, adapted)."""
    span = f"{_clock(window.start)}-{_clock(window.end)}"
    if window.emotion == "silent":
        return f"{span}  silent    ({window.level_db:.0f} dBFS)"
    marks = " uncertain" if window.uncertain else ""
    marks += f" adapted({window.n_clips})" if window.adapted else ""
    return f"{span}  {window.emotion:<9} {100 * window.confidence:3.0f}%  {window.tier}{marks}"


def summary_line(summary: Prediction) -> str:
    """The stream's summary as one line."""
    if summary.emotion is None:
        return f"{_clock(summary.duration)} heard: {summary.error}"
    return (f"{_clock(summary.duration)} heard, {summary.n_windows} windows ({summary.n_silent} silent): "
            f"{summary.emotion} {summary.confidence:.0f}% ({summary.tier}{', uncertain' if summary.uncertain else ''}), "
            f"in {100 * summary.dominance:.0f}% of the voiced windows"
            + (f"; {summary.note}" if summary.note else ""))


def _clock(seconds: float) -> str:
    minutes, rest = divmod(float(seconds), 60)
    return f"{int(minutes):02d}:{rest:04.1f}"

