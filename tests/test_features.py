import shutil
import warnings

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile

import ser_lib
from conftest import voiced_signal
from ser_lib import features, quality
from ser_lib.audio import AudioError
from ser_lib.features import extract_features, extract_many
from ser_lib.recipes import original
from ser_lib.recipes.original import FEATURE_BLOCKS, FEATURE_NAMES


def reference_features(path):
    """The original recipe, verbatim: what ours must equal."""
    y, sr = librosa.load(path, duration=3, sr=22050)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.hstack([
            np.mean(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40).T, axis=0),
            np.mean(librosa.feature.chroma_stft(y=y, sr=sr).T, axis=0),
            np.mean(librosa.feature.melspectrogram(y=y, sr=sr).T, axis=0),
            np.mean(librosa.feature.spectral_contrast(y=y, sr=sr).T, axis=0),
            np.mean(librosa.feature.tonnetz(y=y, sr=sr).T, axis=0),
            np.mean(librosa.feature.zero_crossing_rate(y)),
            np.mean(librosa.feature.spectral_rolloff(y=y, sr=sr)),
        ])


def test_feature_layout_is_one_constant():
    assert sum(FEATURE_BLOCKS.values()) == 195 == len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    assert list(FEATURE_BLOCKS) == ["mfcc", "chroma", "mel", "contrast", "tonnetz", "zcr", "rolloff"]
    assert FEATURE_NAMES[0] == "mfcc_000" and FEATURE_NAMES[40] == "chroma_000" and FEATURE_NAMES[-1] == "rolloff"


@pytest.mark.parametrize(
    "seconds, sr, f0, channels",
    [(3.0, 22050, 120.0, 1), (4.5, 48000, 210.0, 1), (2.2, 16000, 95.0, 1), (3.0, 44100, 180.0, 2), (0.6, 24414, 250.0, 1)],
)
def test_features_equal_the_original_recipe(write_wav, seconds, sr, f0, channels):
    path = write_wav(seconds=seconds, sr=sr, f0=f0, channels=channels, seed=int(f0))
    ours = extract_features(path)
    assert ours.shape == (195,) and ours.dtype == np.float32 and np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, reference_features(path), rtol=1e-5, atol=1e-6)


def test_features_differ_between_voices(write_wav):
    low = extract_features(write_wav("low.wav", f0=100.0))
    high = extract_features(write_wav("high.wav", f0=260.0))
    assert not np.allclose(low, high, rtol=0.05)


def test_only_the_first_three_seconds_count(write_wav):
    speech = voiced_signal(3.0)
    long = write_wav("long.wav", data=np.concatenate([speech, np.zeros(22050 * 57, np.float32)]))
    short = write_wav("short.wav", data=speech)
    np.testing.assert_array_equal(extract_features(long), extract_features(short))


@pytest.mark.parametrize("sr, channels", [(8000, 1), (96000, 1), (22050, 6)])
def test_any_rate_and_channel_count_is_read(write_wav, sr, channels):
    path = write_wav(sr=sr, channels=channels)
    np.testing.assert_allclose(extract_features(path), reference_features(path), rtol=1e-5, atol=1e-6)


def _write(path, data, sr=22050, subtype=None):
    soundfile.write(path, data, sr, subtype=subtype)
    return path


def _truncated_header(tmp):
    path = _write(tmp / "truncated.wav", np.full(100, 0.1, np.float32))
    path.write_bytes(path.read_bytes()[:20])
    return path


def _text_named_wav(tmp):
    (tmp / "notes.wav").write_text("not audio at all\n" * 50)
    return tmp / "notes.wav"


def _zero_bytes(tmp):
    (tmp / "empty.wav").write_bytes(b"")
    return tmp / "empty.wav"


BAD_AUDIO = {
    "missing": (lambda tmp: tmp / "missing.wav", FileNotFoundError, "No audio file at"),
    "folder": (lambda tmp: tmp, IsADirectoryError, "is a folder: expected an audio file"),
    "zero-bytes": (_zero_bytes, AudioError, r"is empty \(0 bytes\)"),
    "text-named-wav": (_text_named_wav, AudioError, "Cannot decode .* as audio"),
    "truncated-header": (_truncated_header, AudioError, "Cannot decode .* as audio"),
    "no-samples": (lambda tmp: _write(tmp / "none.wav", np.zeros(0, np.float32)), AudioError, "no audio samples"),
    "all-zeros": (lambda tmp: _write(tmp / "zeros.wav", np.zeros(66150, np.float32)), AudioError, "is silent: peak amplitude 0"),
    "10ms": (lambda tmp: _write(tmp / "blip.wav", np.full(220, 0.3, np.float32)), AudioError,
             r"too short: 0.010 s, expected at least 0.25 s"),
    "nan": (lambda tmp: _write(tmp / "nan.wav", np.full(22050, np.nan, np.float32), subtype="FLOAT"), AudioError,
            "NaN or infinite"),
}


@pytest.mark.parametrize("case", list(BAD_AUDIO))
def test_bad_audio_gives_a_clear_error(tmp_path, case):
    make, error, match = BAD_AUDIO[case]
    with pytest.raises(error, match=match):
        extract_features(make(tmp_path))


def test_compute_features_refuses_multichannel_arrays():
    with pytest.raises(ValueError, match=r"Expected mono audio of shape \(n,\), got shape \(2, 100\)"):
        ser_lib.compute_features(np.zeros((2, 100)))


def test_extract_many_records_bad_files_and_goes_on(tmp_path, write_wav):
    good = [write_wav(f"ok{i}.wav", f0=110.0 + 30 * i, seed=i) for i in range(3)]
    bad = tmp_path / "broken.wav"
    bad.write_text("no audio")
    silent = write_wav("silent.wav", data=np.zeros(66150, np.float32))
    table = pd.DataFrame({"path": [good[0], bad, good[1], silent, good[2]], "emotion": list("abcde")})
    with pytest.warns(UserWarning, match="2 of 5 files gave no features"):
        result, skipped = extract_many(table, n_jobs=1, cache_dir=None, progress=False, return_skipped=True)
    assert list(result["emotion"]) == ["a", "c", "e"]
    assert list(result.columns) == ["path", "emotion", *quality.COLUMNS.values(), *FEATURE_NAMES]
    np.testing.assert_array_equal(features.feature_matrix(result)[1], extract_features(good[1]))
    assert list(skipped["path"]) == [str(bad), str(silent)]
    assert "Cannot decode" in skipped["reason"].iloc[0] and "silent" in skipped["reason"].iloc[1]


def test_extract_many_in_parallel_equals_serial(write_wav):
    table = pd.DataFrame({"path": [write_wav(f"c{i}.wav", f0=100.0 + 20 * i, seed=i) for i in range(4)]})
    serial = features.feature_matrix(extract_many(table, n_jobs=1, cache_dir=None, progress=False))
    parallel = features.feature_matrix(extract_many(table, n_jobs=2, cache_dir=None, progress=False))
    # Worker processes use one BLAS thread each: sums may round differently in the last bit.
    np.testing.assert_allclose(serial, parallel, rtol=1e-6, atol=1e-6)


def test_cache_makes_a_rerun_extract_nothing(tmp_path, write_wav, monkeypatch):
    clip = write_wav("clip.wav")
    table = pd.DataFrame({"path": [clip]})
    first = extract_many(table, n_jobs=1, cache_dir=tmp_path / "cache", progress=False)

    def must_not_run(*args):
        raise AssertionError("the file was read and extracted again despite the cache")

    monkeypatch.setattr(features, "_version_signal", must_not_run)
    again = extract_many(table, n_jobs=1, cache_dir=tmp_path / "cache", progress=False)
    pd.testing.assert_frame_equal(first, again)
    # A changed file is a different cache entry.
    write_wav("clip.wav", f0=250.0, seconds=2.0)
    with pytest.raises(AssertionError, match="extracted again"):
        extract_many(table, n_jobs=1, cache_dir=tmp_path / "cache", progress=False)


def test_a_corpus_copied_elsewhere_keeps_its_cache_and_a_renamed_file_does_not(tmp_path, write_wav, monkeypatch):
    # Downloaded again, copied, or mounted at another path on a cluster worker: same name and bytes, same features.
    clip = write_wav("corpus/clip.wav")
    first = extract_many(pd.DataFrame({"path": [clip]}), n_jobs=1, cache_dir=tmp_path / "cache", progress=False)
    copy = tmp_path / "elsewhere" / "clip.wav"
    copy.parent.mkdir()
    shutil.copy(clip, copy)

    def must_not_run(*args):
        raise AssertionError("the copy was read and extracted again despite the cache")

    monkeypatch.setattr(features, "_read", must_not_run)
    again = extract_many(pd.DataFrame({"path": [copy]}), n_jobs=1, cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(features.feature_matrix(again), features.feature_matrix(first))
    # Versions are seeded by the file's name: another name is another entry.
    renamed = copy.with_name("other.wav")
    copy.rename(renamed)
    with pytest.raises(AssertionError, match="extracted again"):
        extract_many(pd.DataFrame({"path": [renamed]}), n_jobs=1, cache_dir=tmp_path / "cache", progress=False)


def test_no_cache_dir_writes_nothing(tmp_path, write_wav, monkeypatch):
    monkeypatch.setattr(features, "DEFAULT_CACHE_DIR", tmp_path / "default")
    extract_many(pd.DataFrame({"path": [write_wav()]}), n_jobs=1, cache_dir=None, progress=False)
    assert not (tmp_path / "default").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav"]


def test_extract_many_needs_a_path_column():
    with pytest.raises(ValueError, match="Expected a table with a 'path' column, got columns"):
        extract_many(pd.DataFrame({"file": ["a.wav"]}))


def test_vectorised_sparsify_keeps_what_librosa_keeps():
    rows = np.fft.fft(np.random.default_rng(0).standard_normal((36, 4096)))[:, :2049]
    ours = original._sparsify_rows(rows, quantile=0.01)
    theirs = librosa.util.sparsify_rows(rows, quantile=0.01, dtype=np.complex64)
    np.testing.assert_array_equal(ours.toarray(), theirs.toarray())
