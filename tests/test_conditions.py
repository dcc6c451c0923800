"""Recording conditions: each does what its name says, reproducibly, and extraction and evaluation use them."""

import numpy as np
import pandas as pd
import pytest

import ser_lib
from ser_lib import conditions, evaluate, quality

from conftest import voiced_signal

SR = 16000


@pytest.fixture(scope="module")
def speech():
    # Speech-like: voiced syllables between pauses, as a clip has them (the SNR counts the active part).
    return np.concatenate([np.zeros(SR // 2, np.float32), voiced_signal(2.0, SR, seed=1), np.zeros(SR // 2, np.float32)])


def band_share(y, low, high, sr=SR):
    power = np.abs(np.fft.rfft(y)) ** 2
    freq = np.fft.rfftfreq(len(y), 1 / sr)
    return power[(freq >= low) & (freq < high)].sum() / power.sum()


def test_telephone_keeps_the_telephone_band_only(speech):
    phone = conditions.telephone(speech, SR)
    assert phone.shape == speech.shape and phone.dtype == np.float32
    assert band_share(speech, 4000, SR / 2) > 5e-4 and band_share(phone, 4000, SR / 2) < 1e-6
    # The voice's fundamental (about 140 Hz) is mostly cut: the band starts at 300 Hz.
    assert band_share(speech, 0, 200) > 0.5 and band_share(phone, 0, 200) < 0.02


@pytest.mark.parametrize("name", sorted(conditions.CODECS))
def test_a_codec_round_trip_is_lossy_aligned_and_as_long(speech, name):
    coded = conditions.codec(speech, SR, name)
    assert coded.shape == speech.shape and not np.allclose(coded, speech, atol=1e-3)
    assert np.corrcoef(coded, speech)[0, 1] > 0.9  # its delay is cut: the waveforms line up


def test_the_codecs_run_at_their_documented_bitrates(speech):
    import io

    import soundfile

    kbits = {}
    for name, (container, subtype, rate, level, mode) in conditions.CODECS.items():
        buffer = io.BytesIO()
        soundfile.write(buffer, conditions._resample(speech, SR, rate or SR), rate or SR, format=container, subtype=subtype,
                        compression_level=level, bitrate_mode=mode)
        kbits[name] = len(buffer.getvalue()) * 8 / (len(speech) / SR) / 1000
    assert 14 < kbits["mp3"] < 19 and 8 < kbits["opus"] < 24, kbits


def test_unknown_codec_says_which_exist(speech):
    with pytest.raises(ValueError, match="Unknown codec 'aac': expected one of"):
        conditions.codec(speech, SR, "aac")


@pytest.mark.parametrize("snr_db", [0.0, 15.0])
def test_noise_is_added_at_the_asked_snr_of_the_active_speech(speech, snr_db):
    noise = conditions.white_noise(len(speech), np.random.default_rng(0))
    noisy = conditions.add_noise(speech, SR, noise, snr_db)
    measured = 10 * np.log10(conditions.active_power(speech, SR) / np.mean((noisy - speech).astype(np.float64) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.05)
    # Pauses do not count: the SNR over the whole clip is lower than over its speech.
    assert conditions.active_power(speech, SR) > np.mean(speech.astype(np.float64) ** 2)


def test_babble_is_other_talkers_at_equal_level_and_needs_enough_of_them(speech):
    talkers = [voiced_signal(1.0 + k / 4, SR, f0=100 + 20 * k, seed=k) * (k + 1) for k in range(5)]
    mix = conditions.babble(talkers, len(speech), np.random.default_rng(0), sr=SR)
    assert mix.shape == speech.shape and np.isfinite(mix).all()
    again = conditions.babble(talkers, len(speech), np.random.default_rng(0), sr=SR)
    np.testing.assert_array_equal(mix, again)
    with pytest.raises(ValueError, match="needs at least 4 other speakers' signals, got 3"):
        conditions.babble(talkers[:3], len(speech), np.random.default_rng(0), sr=SR)


def test_a_room_decays_60_db_in_its_reverberation_time(speech):
    rt60 = 0.5
    response = conditions.room_impulse(SR, rt60, np.random.default_rng(0))
    # Schroeder's backward integral of the response: its decay from -5 to -25 dB, extrapolated to 60 dB.
    energy = np.cumsum(response[::-1] ** 2)[::-1]
    decay_db = 10 * np.log10(energy / energy[0])
    t5, t25 = np.argmax(decay_db < -5) / SR, np.argmax(decay_db < -25) / SR
    assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.15)
    wet = conditions.reverberate(speech, SR, rt60, np.random.default_rng(0))
    assert wet.shape == speech.shape
    assert conditions.active_power(wet, SR) == pytest.approx(conditions.active_power(speech, SR), rel=1e-4)


def test_level_and_clipping(speech):
    quiet = conditions.change_level(speech, -30.0)
    np.testing.assert_allclose(quiet, speech * 10 ** (-30 / 20), rtol=1e-5)
    clipped = conditions.clip(speech, 12.0)
    assert np.abs(clipped).max() == 1.0 and (np.abs(clipped) == 1.0).mean() > 0.05


def test_every_condition_is_seeded_and_clean_is_the_clip(speech):
    talkers = [voiced_signal(1.0, SR, f0=100 + 20 * k, seed=k) for k in range(4)]
    for name in conditions.CONDITIONS:
        one = conditions.apply(speech, SR, name, seed=3, talkers=talkers)
        assert one.shape == speech.shape and one.dtype == np.float32 and np.isfinite(one).all(), name
        np.testing.assert_array_equal(one, conditions.apply(speech, SR, name, seed=3, talkers=talkers))
    noisy = [conditions.apply(speech, SR, "white noise 15 dB", seed=s) for s in (1, 2)]
    assert not np.allclose(*noisy)
    np.testing.assert_array_equal(conditions.apply(speech, SR, "clean"), speech)
    with pytest.raises(ValueError, match="Unknown condition 'underwater': expected 'clean' or one of"):
        conditions.apply(speech, SR, "underwater")


def test_extract_many_adds_recorded_versions_cached_under_their_own_keys(demo_run, tmp_path):
    _, features, _ = demo_run
    table = features[["path", "corpus", "speaker", "emotion"]].groupby("speaker").head(3).head(15).reset_index(drop=True)
    assert table["speaker"].nunique() == 5  # babble is one clip of each of four other speakers
    names = ("telephone", "babble 10 dB")
    recorded = ser_lib.extract_many(table, n_jobs=1, cache_dir=tmp_path, progress=False, augmentations=names)
    assert recorded["augmentation"].value_counts().to_dict() == {"none": 15, "telephone": 15, "babble 10 dB": 15}
    cached = sorted(p.name for p in tmp_path.rglob("*.npy") if ".input-" not in p.name)
    assert len(cached) == 45 and sum("-telephone-" in name for name in cached) == 15
    assert len(list(tmp_path.rglob("*.input-*.npy"))) == 45  # each row's measures beside its features
    again = ser_lib.extract_many(table, n_jobs=2, cache_dir=None, progress=False, augmentations=names)
    x = ser_lib.features.feature_matrix
    # The same noise for the same clip; worker processes use one BLAS thread each, so sums may round
    # differently in the last bit (near-zero MFCCs then differ by ~1e-7, relatively more than rtol).
    np.testing.assert_allclose(x(again), x(recorded), rtol=1e-5, atol=1e-6)
    measured = list(quality.COLUMNS.values())
    np.testing.assert_allclose(again[measured], recorded[measured], rtol=1e-9)
    assert (recorded.loc[recorded["augmentation"] == "telephone", "input_high_band_db"] < quality.NARROW_BAND_DB).all()
    assert not np.allclose(x(recorded)[15:30], x(recorded)[:15])
    # A table that holds features already (the notebook passes its clips) gets them once, not twice.
    clips = recorded[recorded["augmentation"] == "none"].drop(columns="augmentation")
    phoned = ser_lib.extract_many(clips, cache_dir=tmp_path, progress=False, augmentations=("telephone",))
    assert phoned.columns.is_unique and x(phoned).shape == (30, x(recorded).shape[1])
    np.testing.assert_array_equal(x(phoned), x(recorded)[:30])
    # One voice only: no babble can be made; each clip's babble row is skipped and says why, the rest is kept.
    with pytest.warns(UserWarning, match="15 of 30 files gave no features"):
        alone, skipped = ser_lib.extract_many(table.assign(speaker="one"), cache_dir=None, progress=False, return_skipped=True,
                                              augmentations=("babble 10 dB",))
    assert (alone["augmentation"] == "none").sum() == 15 and len(alone) == 15
    assert len(skipped) == 15 and skipped["reason"].str.contains("needs at least 4 other speakers' signals, got 0").all()
    # Given other clips to make it of (a test part in babble of the whole corpus), one voice's babble is made of them.
    voice = table[table["speaker"] == table["speaker"].iloc[0]]
    spoken_over = ser_lib.extract_many(voice, cache_dir=tmp_path, progress=False, augmentations=("babble 10 dB",), talkers=table)
    same_rows = recorded["path"].isin(voice["path"]) & (recorded["augmentation"] != "telephone")
    np.testing.assert_array_equal(x(spoken_over), x(recorded.loc[same_rows]))
    with pytest.raises(ValueError, match="expected tables with 'path' and 'speaker' columns"):
        ser_lib.extract_many(table[["path"]], cache_dir=None, progress=False, augmentations=("babble 10 dB",))
    with pytest.raises(ValueError, match="Unknown augmentations \\['phone'\\]"):
        ser_lib.extract_many(table, cache_dir=None, progress=False, augmentations=("phone",))


def test_the_recording_study_predicts_every_test_clip_per_condition_and_mode(demo_run):
    run, features, _ = demo_run
    test = features[features["path"].isin(run.predictions["path"])][["path", "corpus", "speaker", "emotion"]]
    recorded = ser_lib.extract_many(test, n_jobs=2, cache_dir=None, progress=False, augmentations=("telephone", "quiet -30 dB"))
    predictions = evaluate.recording_predictions(run, recorded)
    counts = predictions.groupby(["recording", "mode"], sort=False)["path"].nunique()
    modes = ("per clip", "adapted", "adapted, 2 emotions")
    assert counts.index.tolist() == [(r, m) for r in ("clean", "telephone", "quiet -30 dB") for m in modes]
    assert (counts == len(run.predictions)).all()
    clean = predictions[(predictions["recording"] == "clean") & (predictions["mode"] == "per clip")]
    assert (clean.set_index("path").loc[run.predictions["path"], "predicted"].to_numpy() == run.predictions["predicted"].to_numpy()).all()
    adapted = predictions[(predictions["recording"] == "clean") & (predictions["mode"] == "adapted")]
    assert (adapted["predicted"].to_numpy() == run.adaptive_predictions.set_index("path").loc[adapted["path"], "predicted"].to_numpy()).all()
    # A voice heard in two emotions: each speaker's clips adapted in batches of two of its emotions.
    few = predictions[(predictions["recording"] == "clean") & (predictions["mode"] == "adapted, 2 emotions")].reset_index()
    pairs = ser_lib.adapt.paired(few["speaker"].to_numpy(), few["emotion"].to_numpy(), np.random.default_rng(0))
    x = ser_lib.features.feature_matrix(features.set_index("path").loc[few["path"]].reset_index())
    expected = np.asarray(run.classes)[run.model.predict_speakers(x, pairs)[0].argmax(axis=1)]
    assert (few["predicted"].to_numpy() == expected).all() and len(set(pairs)) > len(set(few["speaker"]))
    table = evaluate.recording_table(predictions, run.classes)
    assert list(table.columns) == ["recording", "mode", "n", "accuracy", "macro_f1", "ece", "ece_perfect_p95", "confidence",
                                   "uncertain", "high_n", "high_wrong", "high_wrong_clean_p95", "confident_wrong"]
    row = table.iloc[0]
    correct = (clean["predicted"] == clean["emotion"]).to_numpy()
    assert row["accuracy"] == pytest.approx(correct.mean())
    # Uncertain: below the abstention threshold, or unlike the training clips (the note says so).
    assert clean.loc[clean["confidence"] < run.model.metadata["abstain_threshold"], "uncertain"].all()
    assert (clean["uncertain"] == ((clean["confidence"] < run.model.metadata["abstain_threshold"])
                                   | clean["note"].str.contains("unlike the training clips"))).all()
    assert row["uncertain"] == pytest.approx(clean["uncertain"].mean())
    # The demo bundle recognises no recording condition: every tier starts at the clean 70%.
    assert list(clean["tier"]) == [ser_lib.model.confidence_tier(100 * c) for c in clean["confidence"]]
    high = clean["confidence"].to_numpy() >= 0.7
    assert row["high_n"] == high.sum()
    assert row["high_wrong"] == pytest.approx((~correct[high]).mean()) if high.any() else np.isnan(row["high_wrong"])
    trusted = high & ~clean["uncertain"].to_numpy()
    assert row["confident_wrong"] == pytest.approx((~correct[trusted]).mean()) if trusted.any() else np.isnan(row["confident_wrong"])
    from ser_lib import plots

    figure = plots.plot_recordings(table)
    assert len(figure.axes) == 3 and len(figure.axes[0].patches) == len(table)


def test_the_recordings_table_tells_a_less_reliable_high_tier_from_few_answers():
    def answers(recording, n, wrong):
        return pd.DataFrame({"recording": recording, "mode": "per clip", "emotion": "sad", "confidence": 0.8, "tier": "high",
                             "uncertain": False, "predicted": ["angry"] * wrong + ["sad"] * (n - wrong)})

    # Clean: 10% of 100 high-tier answers wrong. 4 of 20 (20%) is within what 20 such answers give; 40 of 200 is not.
    predictions = pd.concat([answers("clean", 100, 10), answers("few", 20, 4), answers("many", 200, 40)], ignore_index=True)
    table = evaluate.recording_table(predictions, ["angry", "sad"]).set_index("recording")
    assert list(table["high_n"]) == [100, 20, 200] and list(table["high_wrong"]) == pytest.approx([0.1, 0.2, 0.2])
    assert table.loc["few", "high_wrong"] <= table.loc["few", "high_wrong_clean_p95"]
    assert table.loc["many", "high_wrong"] > table.loc["many", "high_wrong_clean_p95"]
    assert table.loc["clean", "high_wrong_clean_p95"] > 0.1
    text = evaluate.describe_recordings(table.reset_index())
    assert "beyond what their number explains: many (per clip, 20% of 200)." in text
