"""Input measures: each reads what its name says, a model learns its training range, and unlike inputs are uncertain."""

import numpy as np
import pytest
import soundfile

import ser_lib
from ser_lib import conditions, quality

from conftest import voiced_signal

SR = 22050


@pytest.fixture(scope="module")
def speech():
    # Speech-like: voiced syllables between pauses, as a clip has them.
    return np.concatenate([np.zeros(SR // 2, np.float32), voiced_signal(2.0, SR, seed=1), np.zeros(SR // 2, np.float32)])


def tone(seconds=3.0):
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def white(seconds=3.0):
    return (0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32)


def music(seconds=3.0):
    # Notes of a plucked instrument (harmonics, decaying), one after the other: no pauses.
    t = np.arange(int(seconds * SR / 8)) / SR
    notes = [220, 277, 330, 440, 330, 277, 247, 294]
    return np.concatenate([sum(0.2 / k * np.sin(2 * np.pi * k * f * t) * np.exp(-3 * t) for k in range(1, 6))
                           for f in notes]).astype(np.float32)


def test_a_telephone_channel_is_narrow_band(speech):
    wide, narrow = quality.measure(speech, SR), quality.measure(conditions.telephone(speech, SR), SR)
    assert wide["high_band_db"] > quality.NARROW_BAND_DB > narrow["high_band_db"]


@pytest.mark.parametrize("snr_db", [5.0, 15.0, 25.0])
def test_the_snr_estimate_follows_added_noise(speech, snr_db):
    noisy = conditions.add_noise(speech, SR, conditions.white_noise(len(speech), np.random.default_rng(3)), snr_db)
    assert quality.measure(speech, SR)["snr_db"] > 40
    assert quality.measure(noisy, SR)["snr_db"] == pytest.approx(snr_db, abs=4.0)


@pytest.mark.parametrize("steady", [tone, white, music], ids=["tone", "white noise", "music"])
def test_a_steady_sound_has_no_pauses_above_its_noise(steady):
    measures = quality.measure(steady(), SR)
    assert measures["snr_db"] < quality.STEADY_SNR_DB
    assert "not speech" in quality.describe(list(measures.values()))


def test_level_and_clipping(speech):
    clean, quiet = quality.measure(speech, SR), quality.measure(conditions.change_level(speech, -30.0), SR)
    assert quiet["level_db"] == pytest.approx(clean["level_db"] - 30.0, abs=0.01)
    assert clean["clipped_permille"] < quality.CLIPPED_PERMILLE < quality.measure(conditions.clip(speech, 12.0), SR)["clipped_permille"]


def test_limits_are_the_training_range_widened_and_name_what_lies_outside():
    rng = np.random.default_rng(0)
    training = np.column_stack([rng.uniform(-30, -10, 500), rng.uniform(30, 60, 500), rng.uniform(-50, -20, 500),
                                np.zeros(500)])
    limits = quality.fit_limits(training)
    assert limits["snr_db"][1] is None and limits["clipped_permille"][0] is None
    assert limits["snr_db"][0] == pytest.approx(np.percentile(training[:, 1], quality.LIMIT_PERCENTILE) - quality.MARGINS["snr_db"])
    assert not quality.beyond(training, limits).any()
    phone_in_noise = [-60.0, 10.0, -30.0, 0.0]
    assert quality.beyond(phone_in_noise, limits).tolist() == [[True, True, False, False]]
    note = quality.describe(phone_in_noise, limits)
    assert "narrow-band" in note and "noisy: ~10 dB SNR" in note and "unlike the training clips: high_band_db -60.0" in note
    assert quality.describe(training[0], limits) == "" and not quality.beyond(phone_in_noise, None).any()
    with pytest.raises(ValueError, match="Expected rows of the 4 measures"):
        quality.fit_limits(np.full((3, 4), np.nan))


def test_extract_many_measures_each_version_and_training_keeps_the_range(demo_run):
    run, features, _ = demo_run
    columns = list(quality.COLUMNS.values())
    assert features[columns].notna().all().all()
    row = features.iloc[0]
    y = ser_lib.load_audio(row["path"], sr=SR, duration=3.0)  # the original recipe reads the first 3 s
    assert row[columns].to_numpy(dtype=float) == pytest.approx(list(quality.measure(y, SR).values()), abs=1e-9)
    limits = run.model.metadata["input_limits"]
    trained = features[run.split.to_numpy() == "train"]
    assert not quality.beyond(quality.measure_table(trained), limits).any()


@pytest.mark.parametrize("sound", [tone, white, music], ids=["tone", "white noise", "music"])
def test_a_tone_noise_and_music_come_out_uncertain_and_say_why(demo_run, tmp_path, sound):
    _, _, bundle = demo_run
    path = tmp_path / "sound.wav"
    soundfile.write(path, sound(), SR)
    result = ser_lib.predict_emotion(path, bundle, progress=False)
    assert result.uncertain and "not speech" in result.note and "unlike the training clips" in result.note


def test_a_clip_like_the_training_clips_has_no_note_and_old_bundles_no_range(demo_run, tmp_path):
    import json
    import shutil

    run, features, bundle = demo_run
    test_clip = run.predictions["path"].iloc[0]
    result = ser_lib.predict_emotion(test_clip, bundle, progress=False)
    assert "unlike the training clips" not in result.note
    table = ser_lib.predict_many([test_clip], bundle, progress=False)
    assert table.loc[0, "note"] == result.note and list(table.columns).index("note") == list(table.columns).index("uncertain") + 1

    # A bundle saved before the measures: predicted as before, its notes still said, nothing out of range.
    old = shutil.copytree(bundle, tmp_path / "old")
    metadata = json.loads((old / "model_metadata.json").read_text())
    metadata.pop("input_limits")
    (old / "model_metadata.json").write_text(json.dumps(metadata))
    path = tmp_path / "tone.wav"
    soundfile.write(path, tone(), SR)
    before = ser_lib.predict_emotion(path, old, progress=False)
    assert "not speech" in before.note and "unlike the training clips" not in before.note


def test_a_recording_snr_is_that_of_its_quietest_windows(speech):
    # Continuous talk, then a pause: its windows of talk alone read low SNRs, the recording does not.
    y = np.concatenate([voiced_signal(6.0, SR, seed=2), speech])
    noisy = conditions.add_noise(y, SR, conditions.white_noise(len(y), np.random.default_rng(4)), 15.0)
    snr = {}
    for name, signal in (("clean", y), ("noisy", noisy)):
        windows = np.array([list(quality.measure(signal[s : s + 2 * SR], SR).values()) for s in range(0, len(signal) - 2 * SR, SR)])
        combined = quality.recording_measures(windows)
        assert combined[2] == pytest.approx(np.median(windows[:, 2]))  # the median window's level
        snr[name] = (np.median(windows[:, 1]), combined[1])
    assert snr["clean"][0] < 30 < 40 < snr["clean"][1]
    assert snr["noisy"][1] == pytest.approx(15.0, abs=4.0)
