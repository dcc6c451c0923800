"""Live: EmotionStream against predict_emotion, online adaptation, bad input, and `ser listen` with a simulated microphone."""

import _thread
import shutil
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import soxr

import ser_lib
from ser_lib import cli
from ser_lib.adapt import SpeakerStatistics
from ser_lib.audio import AudioError
from ser_lib.stream import EmotionStream, replay

SR = 22050


@pytest.fixture(scope="session")
def bundle(demo_run):
    return demo_run[2]


@pytest.fixture(scope="module")
def recording(demo_run, tmp_path_factory):
    """Eight demo test clips joined by 1 s of digital silence, 5 s after every third (silent windows), at 22,050 Hz."""
    run = demo_run[0]
    paths = run.predictions["path"].head(8)
    pieces = [piece for i, path in enumerate(paths)
              for piece in (ser_lib.load_audio(path, sr=SR, duration=None), np.zeros((5 if i % 3 == 2 else 1) * SR, np.float32))]
    return np.concatenate(pieces)


def write(tmp_path, y, sr, name="recording.wav"):
    path = tmp_path / name
    soundfile.write(path, y, sr, subtype="FLOAT")
    return path


@pytest.mark.parametrize("sr, channels", [(SR, 1), (16000, 1), (48000, 2)])
def test_a_recording_fed_in_100_ms_chunks_gives_the_windows_of_predict_emotion(bundle, recording, tmp_path, sr, channels):
    y = recording if sr == SR else soxr.resample(recording, SR, sr)
    y = np.stack([y, 0.5 * y], axis=1) if channels == 2 else y
    path = write(tmp_path, y, sr)
    whole = ser_lib.predict_emotion(path, bundle, adapt=False, progress=False)
    live = replay(path, bundle, chunk_seconds=0.1, adapt=False)
    classes = list(whole.probabilities)
    assert len(live.timeline) == len(whole.timeline) > 10 and (whole.timeline["emotion"] == "silent").sum() >= 2
    for column in ("start", "end", "emotion"):
        assert live.timeline[column].tolist() == whole.timeline[column].tolist()
    np.testing.assert_allclose(live.timeline[classes].to_numpy(), whole.timeline[classes].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(live.timeline["level_db"], whole.timeline["level_db"], atol=0.011)
    assert live.emotion == whole.emotion and live.confidence == pytest.approx(whole.confidence, abs=1e-3)
    assert (live.n_windows, live.n_silent, live.adapted) == (whole.n_windows, whole.n_silent, False)
    assert live.duration == pytest.approx(whole.duration)


def test_each_window_comes_once_as_soon_as_it_is_complete_whatever_the_chunk_sizes(bundle, recording):
    rng = np.random.default_rng(0)
    stream = EmotionStream(bundle, sr=SR, adapt=False)
    returned, position, last_start = [], 0, -1.0
    while position < len(recording):
        size = int(rng.integers(1, SR))  # from one sample to a second
        new = stream.feed(recording[position : position + size])
        position += size
        # A window is returned by the chunk that completes it, never before, never again.
        assert (new["end"] <= position / SR + 1e-9).all() and (new["heard"] == position / SR).all()
        assert (new["end"] > (position - size) / SR).all() and (new["start"] > last_start).all()
        last_start = new["start"].max() if len(new) else last_start
        returned.append(new)
    summary = stream.close()
    streamed = pd.concat(returned + [summary.timeline.iloc[sum(map(len, returned)):]], ignore_index=True)
    as_shown = lambda table: table.astype(object).where(table.notna(), None)  # noqa: E731 - tier None or NaN
    pd.testing.assert_frame_equal(as_shown(streamed), as_shown(summary.timeline))
    # The same windows as fed whole, in one chunk.
    at_once = EmotionStream(bundle, sr=SR, adapt=False)
    at_once.feed(recording)
    np.testing.assert_allclose(at_once.close().timeline["start"], summary.timeline["start"])
    with pytest.raises(ValueError, match="This stream is closed"):
        stream.feed(recording[:100])


def test_adaptation_learns_the_voice_from_the_windows_heard_so_far(bundle, recording):
    model = ser_lib.get_model(bundle)
    stream = EmotionStream(bundle, sr=SR)
    stream.feed(recording)
    summary = stream.close()
    timeline = summary.timeline
    voiced = timeline[timeline["emotion"] != "silent"]
    # The first voiced window is per clip; each later one adapted to all the voiced windows up to it.
    assert voiced["n_clips"].tolist() == list(range(1, len(voiced) + 1))
    assert voiced["adapted"].tolist() == [False] + [True] * (len(voiced) - 1)
    assert summary.adapted and summary.n_clips == len(voiced)
    # Its statistics in constant memory equal those of all the voiced windows' features.
    windows = [recording[int(round(start * SR)) : int(round(start * SR)) + 3 * SR] for start in voiced["start"]]
    features = ser_lib.predict.signal_features(model, windows)
    expected = SpeakerStatistics.of(features)
    statistics = stream._voice.statistics()
    np.testing.assert_allclose(statistics.mean, expected.mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(statistics.var, expected.var, rtol=1e-5, atol=1e-9)
    assert statistics.mix.sum() == pytest.approx(1.0)
    # Per window, the adapted probabilities differ from the per-clip ones (the same windows).
    per_clip = replay_array(bundle, recording, adapt=False).timeline
    classes = list(model.classes)
    later = voiced.index[1:]
    assert not np.allclose(timeline.loc[later, classes], per_clip.loc[later, classes], atol=1e-3)
    # Causal: a window shown is adapted to what came before it only, whatever is heard after.
    early = EmotionStream(bundle, sr=SR).feed(recording[: len(recording) // 2])
    assert 5 < len(early) < len(timeline)
    np.testing.assert_allclose(early[classes].to_numpy(), timeline.loc[: len(early) - 1, classes].to_numpy(), atol=1e-12)


def replay_array(bundle, y, **options):
    stream = EmotionStream(bundle, sr=SR, **options)
    stream.feed(y)
    return stream.close()


def test_a_stream_can_start_from_an_enrolled_speaker(demo_run, bundle, recording, tmp_path):
    run = demo_run[0]
    bundle = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    own = run.predictions["path"].head(8).tolist()
    ser_lib.enroll_speaker("ann", own, bundle, progress=False)
    summary = replay_array(bundle, recording, speaker="ann")
    voiced = summary.timeline[summary.timeline["emotion"] != "silent"]
    assert voiced["adapted"].all() and voiced["n_clips"].tolist() == list(range(len(own) + 1, len(own) + len(voiced) + 1))
    with pytest.raises(ValueError, match="needs adapt=True"):
        EmotionStream(bundle, sr=SR, speaker="ann", adapt=False)
    with pytest.raises(FileNotFoundError, match="No speaker 'bob' is enrolled"):
        EmotionStream(bundle, sr=SR, speaker="bob")


def test_the_stream_keeps_no_more_audio_than_its_next_windows_need(bundle):
    stream = EmotionStream(bundle, sr=16000, adapt=False)
    rng = np.random.default_rng(0)
    chunk = 1600
    longest = 0
    for _ in range(6000):  # ten minutes, below the silence gate (no features: fast)
        stream.feed(1e-5 * rng.standard_normal(chunk).astype(np.float32))
        longest = max(longest, len(stream._windower.buffer))
    window, hop = stream._windower.window, stream._windower.hop
    assert longest <= window + hop + chunk * SR // 16000 + 64
    summary = stream.close()
    assert summary.n_windows == 399 and summary.n_silent == 399 and summary.emotion is None
    assert summary.duration == pytest.approx(600.0) and "no speech" in summary.error


def test_bad_samples_and_settings_get_clear_errors(bundle):
    stream = EmotionStream(bundle, sr=SR)
    with pytest.raises(TypeError, match="Expected float samples .* got dtype int16: divide 16-bit integers by 32768"):
        stream.feed(np.zeros(100, dtype=np.int16))
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(n, channels\), got shape \(2, 3, 4\)"):
        stream.feed(np.zeros((2, 3, 4), dtype=np.float32))
    with pytest.raises(AudioError, match="NaN or infinite"):
        stream.feed(np.array([0.0, np.nan], dtype=np.float32))
    for sr in (0, 16000.0, None):
        with pytest.raises(ValueError, match=f"sr={sr!r}: expected the sample rate"):
            EmotionStream(bundle, sr=sr)
    with pytest.raises(ValueError, match="hop=0.0 s"):
        EmotionStream(bundle, sr=SR, hop=0)
    short = EmotionStream(bundle, sr=SR)
    short.feed(np.full(SR, 0.1, dtype=np.float32))
    assert short.close().error == "no window: 1.00 s of audio heard, a window is 3 s"
    with pytest.raises(ValueError, match="chunk_seconds=0"):
        replay(__file__, bundle, chunk_seconds=0)
    with pytest.raises(AudioError, match="Cannot decode"):
        replay(__file__, bundle)


# ---------------------------------------------------------------------------------------------
# ser listen, with a simulated microphone
# ---------------------------------------------------------------------------------------------


def fake_sounddevice(y, sr, *, devices=True):
    """A stand-in for the sounddevice module: its input stream plays ``y`` in the callback's chunks, then presses Ctrl-C."""
    module = types.ModuleType("sounddevice")

    def query_devices(device=None, kind=None):
        if not devices:
            raise ValueError("No input device matching None")
        return {"name": "Simulated microphone", "default_samplerate": float(sr), "max_input_channels": 1}

    class Flags:
        input_overflow = False

    class InputStream:
        def __init__(self, *, samplerate, device, channels, dtype, blocksize, callback):
            assert (samplerate, channels, dtype) == (sr, 1, "float32")
            self.blocksize, self.callback = blocksize, callback

        def play(self):
            for start in range(0, len(y), self.blocksize):
                block = y[start : start + self.blocksize, None]
                self.callback(block, len(block), None, Flags())
            _thread.interrupt_main()  # Ctrl-C

        def __enter__(self):
            threading.Thread(target=self.play, daemon=True).start()
            return self

        def __exit__(self, *exc):
            return False

    module.query_devices, module.InputStream = query_devices, InputStream
    return module


def test_ser_listen_prints_a_line_per_window_and_the_summary_on_ctrl_c(bundle, recording, tmp_path, monkeypatch, capsys):
    y = soxr.resample(recording, SR, 16000).astype(np.float32)
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(y, 16000))
    csv = tmp_path / "timeline.csv"
    assert cli.main(["listen", "--artifacts", str(bundle), "--no-adapt", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "listening to Simulated microphone at 16000 Hz; a line every 1.5 s, Ctrl-C stops"
    timeline = pd.read_csv(csv)
    expected = ser_lib.predict_emotion(write(tmp_path, y, 16000), bundle, adapt=False, progress=False)
    # Every window once, in order, as predict_emotion sees the recording.
    assert timeline["start"].tolist() == expected.timeline["start"].tolist()
    lines = out[1 : 1 + len(timeline)]
    assert lines[0].startswith("00:00.0-00:03.0  ")
    for line, window in zip(lines, timeline.itertuples()):
        assert (window.emotion in line) and (window.emotion == "silent" or f"{100 * window.confidence:3.0f}%  {window.tier}" in line)
    assert out[1 + len(timeline)].startswith(f"00:{expected.duration:04.1f} heard, {len(timeline)} windows")
    assert f"{expected.emotion} {expected.confidence:.0f}%" in out[1 + len(timeline)]
    assert out[-1] == f"timeline: {csv}"


def test_ser_listen_without_sounddevice_or_a_microphone_says_so_in_one_line(bundle, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    assert cli.main(["listen", "--artifacts", str(bundle)]) == 2
    assert capsys.readouterr().err == "error: Listening needs the sounddevice package: pip install 'ser_lib[live]'.\n"
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(np.zeros(10, np.float32), 16000, devices=False))
    assert cli.main(["listen", "--artifacts", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No microphone: No input device matching None") and err.count("\n") == 1
