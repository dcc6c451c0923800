import socket

import numpy as np
import pytest
import soundfile

import ser_lib


def voiced_signal(seconds: float = 3.0, sr: int = 22050, f0: float = 140.0, seed: int = 0, channels: int = 1):
    """A seeded speech-like signal: harmonics with vibrato, syllables that fall silent between them, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 12))
    y *= np.sin(2 * np.pi * 3 * t) ** 2
    y = 0.3 * y / np.max(np.abs(y)) + 0.005 * rng.standard_normal(t.size)
    y = y.astype(np.float32)
    if channels > 1:
        y = np.stack([y * (1 - 0.1 * c) for c in range(channels)], axis=1)
    return y


@pytest.fixture
def write_wav(tmp_path):
    """Write a voiced test signal (or a given array) to tmp_path and return its path."""

    def write(name="clip.wav", *, seconds=3.0, sr=22050, f0=140.0, seed=0, channels=1, data=None, subtype=None):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        y = voiced_signal(seconds, sr, f0, seed, channels) if data is None else data
        soundfile.write(path, y, sr, subtype=subtype)
        return path

    return write


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network (every connection and name lookup fails) and an empty kagglehub cache."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    return tmp_path / "kagglehub"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The original recipe trained on a small demo corpus (speaker split): its run, features and saved bundle.

    One training for the whole session (the prediction and adaptation tests share it).
    """
    root = ser_lib.make_demo_corpus(tmp_path_factory.mktemp("demo"), seed=2, speakers_per_corpus=3, clips_per_emotion=2)
    features = ser_lib.extract_many(ser_lib.scan_corpora(root), n_jobs=2, cache_dir=None, progress=False)
    run = ser_lib.train(features, protocol="speaker", seed=0, epochs=8, progress=False)
    bundle = ser_lib.save_bundle(run, tmp_path_factory.mktemp("bundle") / "artifacts")
    return run, features, bundle
