"""Prediction: the result object, long recordings, bad input and `ser predict`, on a tiny demo bundle."""

import json
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import soxr

import ser_lib
from ser_lib import cli, predict
from ser_lib.audio import AudioError

from conftest import voiced_signal

SR = 22050


@pytest.fixture(scope="session")
def bundle(demo_run):
    return demo_run[2]


@pytest.fixture(scope="session")
def classes(bundle):
    return ser_lib.load_bundle(bundle).classes


def speech_with_pauses(pattern, sr=SR, seed=0):
    """Voiced segments and digital silence: pattern = [(seconds, voiced?), ...]."""
    parts = [voiced_signal(s, sr, seed=seed + i) if voiced else np.zeros(int(s * sr), np.float32)
             for i, (s, voiced) in enumerate(pattern)]
    return np.concatenate(parts)


def edit_bundle(bundle, tmp_path, change):
    copy = Path(shutil.copytree(bundle, tmp_path / "edited"))
    metadata = json.loads((copy / "model_metadata.json").read_text())
    change(metadata)
    (copy / "model_metadata.json").write_text(json.dumps(metadata))
    return copy


# ---------------------------------------------------------------------------------------------
# The result object
# ---------------------------------------------------------------------------------------------


def test_a_clip_keeps_the_original_triple_and_the_original_numbers(bundle, classes, write_wav):
    path = write_wav("clip.wav", seconds=4.0)
    result = ser_lib.predict_emotion(path, bundle)
    emotion, confidence, probabilities = result
    model = ser_lib.load_bundle(bundle)
    expected = model.predict_proba(ser_lib.extract_features(path))[0]
    assert isinstance(result, tuple) and len(result) == 3 and result[0] == emotion == classes[int(expected.argmax())]
    assert confidence == pytest.approx(100 * expected.max(), abs=1e-4)
    assert list(probabilities) == classes and np.allclose(list(probabilities.values()), expected, atol=1e-6)
    assert [name for name, _ in result.top3] == [classes[i] for i in np.argsort(-expected)[:3]]
    assert result.tier == ser_lib.model.confidence_tier(confidence) and result.uncertain is False
    assert result.timeline is None and result.n_windows == 1 and result.n_silent == 0 and result.dominance == 1.0
    assert result.duration == pytest.approx(4.0) and result.error is None
    pd.testing.assert_series_equal(result.distribution, pd.Series(probabilities, name="probability"))
    assert pickle.loads(pickle.dumps(result)) == result and pickle.loads(pickle.dumps(result)).tier == result.tier


@pytest.mark.parametrize("confidence, tier", [(100, "high"), (70, "high"), (69.9, "medium"), (40, "medium"),
                                              (39.9, "low"), (0, "low"), (float("nan"), None)])
def test_confidence_tiers(confidence, tier):
    assert ser_lib.model.confidence_tier(confidence) == tier


def test_uncertain_reads_the_bundles_abstain_threshold(bundle, tmp_path, write_wav):
    path = write_wav()
    # A high temperature keeps the top probability under 1, so a threshold just above it can be set;
    # without a threshold nothing is uncertain.
    warm = edit_bundle(bundle, tmp_path / "warm",
                       lambda m: m.update(temperature=100.0, temperature_slope=0.0, abstain_threshold=None))
    top = ser_lib.predict_emotion(path, warm).confidence / 100
    assert top < 1 and ser_lib.predict_emotion(path, warm).uncertain is False
    strict = edit_bundle(warm, tmp_path / "strict", lambda m: m.update(abstain_threshold=(1 + top) / 2))
    result = ser_lib.predict_emotion(path, strict)
    assert result.uncertain is True and result.emotion is not None and result.confidence == pytest.approx(100 * top)
    lenient = edit_bundle(warm, tmp_path / "lenient", lambda m: m.update(abstain_threshold=top / 2))
    assert ser_lib.predict_emotion(path, lenient).uncertain is False
    table = predict.predict_many([path], strict, progress=False)
    assert table["uncertain"].tolist() == [True] and table["emotion"].notna().all()


def test_a_bundle_from_before_the_temperature_slope_predicts_at_its_one_temperature(bundle, tmp_path, write_wav):
    path = write_wav()
    older = edit_bundle(bundle, tmp_path / "older", lambda m: m.pop("temperature_slope"))
    plain = edit_bundle(bundle, tmp_path / "plain", lambda m: m.update(temperature_slope=0.0))
    assert ser_lib.load_bundle(older).temperature_slope == 0
    assert ser_lib.predict_emotion(path, older).distribution.equals(ser_lib.predict_emotion(path, plain).distribution)


# ---------------------------------------------------------------------------------------------
# Long recordings
# ---------------------------------------------------------------------------------------------


def test_a_long_recording_gets_a_timeline_and_silence_is_left_out(bundle, classes, tmp_path):
    y = speech_with_pauses([(6, True), (5, False), (4, True), (5, False)])
    path = tmp_path / "long.wav"
    soundfile.write(path, y, SR)
    result = ser_lib.predict_emotion(path, bundle, progress=False)
    timeline = result.timeline
    assert list(timeline.columns[:4]) == ["start", "end", "emotion", "confidence"] and set(classes) <= set(timeline)
    # Every 1.5 s up to 16.5-19.5 s, then one window aligned to the end (17-20 s).
    np.testing.assert_allclose(timeline["start"], [*np.arange(0, 16.51, 1.5), 17.0])
    assert result.n_windows == 13 and result.duration == pytest.approx(20.0)
    silent = timeline["emotion"] == "silent"
    # Windows inside a pause (6-11 s, 15-20 s) are silent; every window touching speech is not.
    assert timeline.loc[silent, "start"].tolist() == [6.0, 7.5, 15.0, 16.5, 17.0] and result.n_silent == 5
    assert timeline.loc[silent, classes].isna().all(axis=None) and timeline.loc[~silent, "confidence"].between(0, 1).all()
    voiced = timeline.loc[~silent, classes].to_numpy()
    np.testing.assert_allclose(result.distribution.to_numpy(), voiced.mean(axis=0), atol=1e-6)
    assert result.emotion == classes[int(voiced.mean(axis=0).argmax())]
    assert result.confidence == pytest.approx(100 * voiced.mean(axis=0).max())
    assert result.dominance == pytest.approx(np.mean(voiced.argmax(axis=1) == classes.index(result.emotion)))
    # Each window's probabilities are the model's on exactly that stretch of audio, adapted to the
    # recording's voiced windows (one voice).
    model = ser_lib.load_bundle(bundle)
    audio = soundfile.read(path, dtype="float32")[0]
    rows = predict.signal_features(model, [audio[int(t * SR) : int(t * SR) + 3 * SR] for t in timeline.loc[~silent, "start"]])
    expected, adapted, n_clips = model.predict_speakers(rows, ["recording"] * len(rows))
    np.testing.assert_allclose(voiced, expected, atol=1e-5)
    assert model.adaptive is not None and result.adapted and adapted.all() and result.n_clips == len(rows) == 8
    assert result.plot_timeline() is not None and result.plot_distribution() is not None


def test_parallel_windows_give_the_same_result(bundle, classes, tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(path, speech_with_pauses([(12, True)]), SR)
    one = ser_lib.predict_emotion(path, bundle, progress=False)
    two = ser_lib.predict_emotion(path, bundle, progress=False, n_jobs=2)
    np.testing.assert_allclose(one.timeline[classes], two.timeline[classes], atol=1e-6)


@pytest.mark.parametrize("window, hop, starts", [
    (2.0, 1.0, [0, 1, 2, 3, 4, 5, 6, 7]),        # regular windows reach the end exactly
    (3.0, 3.0, [0, 3, 6]),                       # no overlap, nothing left over
    (3.0, 2.5, [0, 2.5, 5, 6]),                  # 8-9 s left over: one more window aligned to the end
    (3.0, 5.0, [0, 5, 6]),                       # hop > window leaves gaps; the end is still covered
])
def test_window_and_hop_options(bundle, tmp_path, window, hop, starts):
    path = tmp_path / "nine.wav"
    soundfile.write(path, voiced_signal(9.0, SR), SR)
    result = ser_lib.predict_emotion(path, bundle, window=window, hop=hop, progress=False)
    np.testing.assert_allclose(result.timeline["start"], starts)
    np.testing.assert_allclose(result.timeline["end"] - result.timeline["start"], window)


def test_a_file_shorter_than_window_plus_hop_is_a_clip(bundle, write_wav):
    result = ser_lib.predict_emotion(write_wav(seconds=4.4), bundle)
    assert result.timeline is None and result.n_windows == 1


@pytest.mark.parametrize("window, hop, match", [(0.1, 1.0, "window=0.1 s: expected at least 0.25"),
                                                (3.0, 0.0, "hop=0.0 s: expected a step of more than 0")])
def test_bad_window_options_say_what_is_expected(bundle, write_wav, window, hop, match):
    with pytest.raises(ValueError, match=match):
        ser_lib.predict_emotion(write_wav(), bundle, window=window, hop=hop)


def test_streaming_gives_the_windows_of_the_whole_resampled_signal(tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "_BLOCK_SECONDS", 0.77)  # many blocks that cut windows anywhere
    y = voiced_signal(10.3, 8000, channels=2)
    path = tmp_path / "stereo8k.wav"
    soundfile.write(path, y, 8000, subtype="FLOAT")
    whole = soxr.resample(y.mean(axis=1), 8000, SR, quality="HQ")
    windows = list(predict._windows(path, SR, 3 * SR, SR))
    assert [s for s, _ in windows] == list(predict.window_starts(whole.size, 3 * SR, SR))
    for start, samples in windows:
        np.testing.assert_allclose(samples, whole[start:start + 3 * SR], atol=1e-6)


@pytest.mark.slow
def test_a_one_hour_recording_streams(bundle, tmp_path):
    # 16 kHz int16, quiet room noise (-75 dBFS) with four voiced bursts; a 30 s hop keeps the test short.
    sr, path = 16000, tmp_path / "hour.wav"
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", sr, 1, "PCM_16") as out:
        for minute in range(60):
            block = (rng.standard_normal(60 * sr) * 10 ** (-75 / 20)).astype(np.float32)
            if minute in (0, 10, 30, 59):
                block[: 5 * sr] += voiced_signal(5.0, sr, seed=minute)
            out.write(block)
    result = ser_lib.predict_emotion(path, bundle, hop=30.0, progress=False)
    assert result.duration == pytest.approx(3600) and result.n_windows == 121  # 0, 30, ..., 3570, then 3597
    assert result.n_windows - result.n_silent == 4 and result.emotion is not None
    assert result.timeline.loc[result.timeline["emotion"] != "silent", "start"].tolist() == [0, 600, 1800, 3540]


def test_an_all_silent_long_recording_says_there_is_no_speech(bundle, tmp_path):
    path = tmp_path / "quiet.wav"
    soundfile.write(path, np.full(10 * SR, 1e-4, np.float32), SR)
    result = ser_lib.predict_emotion(path, bundle, progress=False)
    assert result.emotion is None and np.isnan(result.confidence) and result.n_silent == result.n_windows == 6
    assert "no speech: all 6 windows are below the silence gate (-60 dBFS)" in result.error
    table = predict.predict_many([path], bundle, progress=False)
    assert "no speech" in table["error"].iloc[0]


# ---------------------------------------------------------------------------------------------
# Formats, rates, channels
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, subtype", [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS"), (".mp3", "MPEG_LAYER_III")])
def test_formats(bundle, classes, tmp_path, suffix, subtype):
    if not soundfile.check_format(suffix[1:].upper(), subtype):
        pytest.skip(f"this libsndfile cannot write {suffix}")
    path = tmp_path / f"clip{suffix}"
    soundfile.write(path, voiced_signal(3.5, 44100), 44100, subtype=subtype)
    emotion, confidence, probabilities = ser_lib.predict_emotion(path, bundle)
    assert emotion in classes and 0 < confidence <= 100 and sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
    long = tmp_path / f"long{suffix}"
    soundfile.write(long, voiced_signal(8.0, 44100), 44100, subtype=subtype)
    assert ser_lib.predict_emotion(long, bundle, progress=False).n_windows == 5


@pytest.mark.parametrize("sr, channels", [(8000, 1), (96000, 1), (44100, 6), (48000, 2)])
def test_any_rate_and_channel_count(bundle, classes, write_wav, sr, channels):
    clip = ser_lib.predict_emotion(write_wav(f"c{sr}.wav", sr=sr, channels=channels), bundle)
    assert clip.emotion in classes
    long = ser_lib.predict_emotion(write_wav(f"l{sr}.wav", sr=sr, channels=channels, seconds=7.0), bundle, progress=False)
    assert long.emotion in classes and long.n_windows == 4 and long.n_silent == 0


# ---------------------------------------------------------------------------------------------
# Bad input: the right result or an error that says what was expected
# ---------------------------------------------------------------------------------------------


def _truncated_header(path):
    soundfile.write(path, voiced_signal(1.0), SR)
    path.write_bytes(path.read_bytes()[:30])


BAD_FILES = {
    "missing": (lambda p: None, FileNotFoundError, "No audio file at .*expected a path to a .wav"),
    "directory": (lambda p: p.mkdir(), IsADirectoryError, "is a folder: expected an audio file"),
    "text": (lambda p: p.write_text("hello, not audio\n" * 20), AudioError, "Cannot decode .* expected a WAV, FLAC"),
    "truncated header": (_truncated_header, AudioError, "Cannot decode"),
    "zero samples": (lambda p: soundfile.write(p, np.zeros(0, np.float32), SR), AudioError, "has no audio samples|empty"),
    "all zeros": (lambda p: soundfile.write(p, np.zeros(3 * SR, np.float32), SR), AudioError, "is silent: peak amplitude 0"),
    "10 ms": (lambda p: soundfile.write(p, voiced_signal(0.01), SR), AudioError, r"too short: 0.010 s, expected at least 0.25 s"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_audio_gives_a_clear_error(bundle, tmp_path, case):
    make, error, match = BAD_FILES[case]
    path = tmp_path / "input.wav"
    make(path)
    with pytest.raises(error, match=match):
        ser_lib.predict_emotion(path, bundle)


def test_all_zeros_long_recording_is_a_result_not_a_crash(bundle, tmp_path):
    path = tmp_path / "zeros.wav"
    soundfile.write(path, np.zeros(30 * SR, np.int16), SR)
    result = ser_lib.predict_emotion(path, bundle, progress=False)
    assert result.emotion is None and "loudest window is at -inf dBFS" in result.error


BAD_BUNDLES = {
    "other features": (lambda m: m["feature_settings"].update(n_fft=1024), ValueError, "trained on other features .*n_fft: bundle 1024, ser_lib 2048"),
    "other classes": (lambda m: m.update(classes=m["classes"][:6]), ValueError, "has 8 outputs, but its metadata lists 6 classes"),
}


@pytest.mark.parametrize("case", BAD_BUNDLES)
def test_bad_bundles_are_refused_with_the_reason(bundle, tmp_path, write_wav, case):
    change, error, match = BAD_BUNDLES[case]
    with pytest.raises(error, match=match):
        ser_lib.predict_emotion(write_wav(), edit_bundle(bundle, tmp_path, change))


def test_a_bundle_missing_a_file_is_refused(bundle, tmp_path, write_wav):
    copy = Path(shutil.copytree(bundle, tmp_path / "partial"))
    (copy / "model_weights.npz").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete: missing model_weights.npz"):
        ser_lib.predict_emotion(write_wav(), copy)


# ---------------------------------------------------------------------------------------------
# ser predict
# ---------------------------------------------------------------------------------------------


def test_ser_predict_folder_with_a_broken_file_and_a_timeline(bundle, classes, tmp_path, capsys):
    folder = tmp_path / "in" / "nested"
    folder.mkdir(parents=True)
    for i in range(3):
        soundfile.write(folder / f"clip{i}.flac", voiced_signal(3.0, 16000, f0=120 + 30 * i, seed=i), 16000)
    soundfile.write(folder / "long.wav", speech_with_pauses([(5, True), (4, False), (3, True)]), SR)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00")
    out, timeline_csv = tmp_path / "out.csv", tmp_path / "timeline.csv"
    code = cli.main(["predict", str(tmp_path / "in"), "--artifacts", str(bundle), "--csv", str(out),
                     "--timeline", str(timeline_csv), "--quiet"])
    assert code == 1 and "1 of 5 files could not be predicted" in capsys.readouterr().err
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["path", "emotion", "confidence", *classes, "tier", "uncertain", "note", "warning", "error"]
    broken = table["path"].str.endswith("broken.wav")
    assert "Cannot decode" in table.loc[broken, "error"].item() and table.loc[broken, "emotion"].item() == ""
    assert (table.loc[~broken, "error"] == "").all() and table.loc[~broken, "emotion"].isin(classes).all()
    assert set(table.loc[~broken, "tier"]) <= {"high", "medium", "low"}
    timeline = pd.read_csv(timeline_csv)
    assert list(timeline.columns[:5]) == ["path", "start", "end", "emotion", "confidence"] and set(classes) <= set(timeline)
    long_rows = timeline[timeline["path"].str.endswith("long.wav")]
    assert len(long_rows) == 7 and (long_rows["emotion"] == "silent").sum() == 1
    assert len(timeline) == 7 + 3  # one row per clip


def test_ser_predict_reports_a_dangling_link_and_a_truncated_file_in_their_rows(bundle, classes, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    soundfile.write(folder / "whole.wav", voiced_signal(3.0, SR), SR, subtype="PCM_16")
    data = (folder / "whole.wav").read_bytes()
    (folder / "cut.wav").write_bytes(data[: 44 + (len(data) - 44) * 2 // 5])  # an interrupted download: 40% there
    (folder / "gone.wav").symlink_to(tmp_path / "moved" / "gone.wav")
    out = tmp_path / "out.csv"
    code = cli.main(["predict", str(folder), "--artifacts", str(bundle), "--csv", str(out), "--quiet"])
    assert code == 1 and "1 of 3 files could not be predicted" in capsys.readouterr().err
    table = pd.read_csv(out, keep_default_na=False).set_index(pd.Series(["cut", "gone", "whole"]))
    assert re.fullmatch(r"'.*gone\.wav' is a symbolic link to '.*moved/gone\.wav', which does not exist: .*",
                        table.loc["gone", "error"]) and table.loc["gone", "emotion"] == ""
    assert table.loc["cut", "emotion"] in classes and table.loc["cut", "error"] == ""
    assert re.match(r"truncated: the header announces 3\.00 s, the file holds 1\.20 s \(60% missing\)", table.loc["cut", "warning"])
    assert table.loc["whole", "warning"] == "" and table.loc["whole", "emotion"] in classes
    result = ser_lib.predict_emotion(folder / "cut.wav", bundle, progress=False)
    assert result.warning == table.loc["cut", "warning"] and result.duration == pytest.approx(1.2, abs=1e-3)
    assert ser_lib.predict_emotion(folder / "whole.wav", bundle, progress=False).warning is None
    with pytest.raises(FileNotFoundError, match="symbolic link to .* which does not exist"):
        ser_lib.predict_emotion(folder / "gone.wav", bundle)


def test_ser_predict_list_file(bundle, tmp_path, write_wav):
    a, b = write_wav("a.wav"), write_wav("b.wav", f0=200)
    listing = tmp_path / "files.txt"
    listing.write_text(f"# clips to check\n{a}\n\n   {b}  \n")
    out = tmp_path / "out.csv"
    assert cli.main(["predict", "--list", str(listing), "--artifacts", str(bundle), "--csv", str(out), "--quiet"]) == 0
    assert pd.read_csv(out)["path"].tolist() == [str(a), str(b)]


@pytest.mark.parametrize("case", ["missing file", *BAD_BUNDLES])
def test_ser_predict_refuses_a_bad_bundle(bundle, tmp_path, write_wav, capsys, case):
    if case == "missing file":
        copy = Path(shutil.copytree(bundle, tmp_path / "partial"))
        (copy / "model_metadata.json").unlink()
        match = "incomplete: missing model_metadata.json"
    else:
        copy, match = edit_bundle(bundle, tmp_path, BAD_BUNDLES[case][0]), BAD_BUNDLES[case][2]
    assert cli.main(["predict", str(write_wav()), "--artifacts", str(copy), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(match, err)


def test_ser_predict_missing_path_is_a_row_with_its_error(bundle, tmp_path, write_wav, capsys):
    assert cli.main(["predict", str(write_wav()), str(tmp_path / "nope.wav"), "--artifacts", str(bundle), "--quiet"]) == 1
    assert "No audio file at" in capsys.readouterr().out


def test_ser_predict_cold_path_imports_neither_tensorflow_nor_sklearn_nor_matplotlib(bundle, write_wav):
    # (joblib is not on the list: librosa imports it for its cache.)
    code = (
        "import sys; from ser_lib import cli; "
        f"code = cli.main(['predict', {str(write_wav())!r}, '--artifacts', {str(bundle)!r}, '--quiet']); "
        "heavy = [m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(code)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
