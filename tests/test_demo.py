"""The synthetic demo corpus: the Kaggle bundle's layout and names, sane audio, determinism,
safety with existing folders, and an emotion that can be learnt across speakers.

Labels are parsed here from the file names with the real corpora's conventions, independently of
``ser_lib.demo``, so these tests also check that the names say what the audio was made to express.
"""

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ser_lib.demo import (
    _EMOTION_PROFILES,
    DEMO_SAMPLE_RATES,
    MARKER_NAME,
    _filter_frames,
    _scale_profile,
    _synthesize_utterance,
    _upsampling_factor,
    _VoiceProfile,
    make_demo_corpus,
)

EMOTIONS = ("angry", "calm", "disgust", "fear", "happy", "neutral", "sad", "surprise")
# Small settings for tests that write several corpora: 35 clips, under a second each run.
SMALL = {"speakers_per_corpus": 1, "clips_per_emotion": 1}

# ## The bundle's naming conventions ---------------------------------------------------------------
CREMA = re.compile(
    r"^Crema/(?P<speaker>10\d\d)_(?P<sentence>IEO|TIE|IOM|IWW|TAI|MTI|IWL|ITH|DFA|ITS|TSI|WSI)"
    r"_(?P<emotion>ANG|DIS|FEA|HAP|NEU|SAD)_(?P<level>LO|MD|HI|XX)\.wav$"
)
RAVDESS = re.compile(
    r"^Ravdess/audio_speech_actors_01-24/Actor_(?P<actor>\d\d)/"
    r"03-01-(?P<emotion>0[1-8])-(?P<intensity>0[12])-(?P<statement>0[12])-(?P<repetition>0[12])"
    r"-(?P=actor)\.wav$"
)
SAVEE = re.compile(r"^Savee/(?P<speaker>DC|JE|JK|KL)_(?P<emotion>sa|su|a|d|f|h|n)(?P<number>\d\d)\.wav$")
TESS = re.compile(
    r"^Tess/(?P<folder>[A-Za-z_]+)/(?P<speaker>OAF|YAF|OA)_(?P<word>[a-z]+)"
    r"_(?P<emotion>angry|disgust|fear|happy|neutral|ps|sad)\.wav$"
)
CREMA_EMOTIONS = {
    "ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad",
}  # fmt: skip
RAVDESS_EMOTIONS = dict(zip(["01", "02", "03", "04", "05", "06", "07", "08"], [
    "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"]))  # fmt: skip
SAVEE_EMOTIONS = {
    "a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprise",
}  # fmt: skip
TESS_FOLDERS = {
    "OAF_angry": "angry", "OAF_disgust": "disgust", "OAF_Fear": "fear", "OAF_happy": "happy",
    "OAF_neutral": "neutral", "OAF_Pleasant_surprise": "surprise", "OAF_Sad": "sad",
    "YAF_angry": "angry", "YAF_disgust": "disgust", "YAF_fear": "fear", "YAF_happy": "happy",
    "YAF_neutral": "neutral", "YAF_pleasant_surprised": "surprise", "YAF_sad": "sad",
}  # fmt: skip
TESS_SUFFIXES = {"ps": "surprise"}


def parse(relpath: str) -> dict:
    """Corpus, speaker and emotion of a demo file, read from its path as the real corpora define them."""
    if m := CREMA.match(relpath):
        return {"corpus": "CREMA-D", "speaker": m["speaker"], "emotion": CREMA_EMOTIONS[m["emotion"]], "match": m}
    if m := RAVDESS.match(relpath):
        return {"corpus": "RAVDESS", "speaker": m["actor"], "emotion": RAVDESS_EMOTIONS[m["emotion"]], "match": m}
    if m := SAVEE.match(relpath):
        return {"corpus": "SAVEE", "speaker": m["speaker"], "emotion": SAVEE_EMOTIONS[m["emotion"]], "match": m}
    if m := TESS.match(relpath):
        # The folder names the speaker and the emotion; one real file says "OA" for "OAF".
        return {"corpus": "TESS", "speaker": m["folder"][:3], "emotion": TESS_FOLDERS[m["folder"]], "match": m}
    raise ValueError(f"{relpath!r} matches none of the four corpora's naming conventions")


def wav_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))


def _autocorrelation_pitch(y: np.ndarray, sr: int, *, fmin: float = 60.0, fmax: float = 500.0) -> np.ndarray:
    """Pitch (Hz) of the clearly voiced 40 ms frames: a crude autocorrelation tracker."""
    frame = 2 ** int(round(np.log2(0.04 * sr)))
    frames = np.lib.stride_tricks.sliding_window_view(y, frame)[:: int(0.02 * sr)]
    energy = np.sqrt(np.mean(frames**2, axis=1))
    frames = frames[energy > energy.max() * 10 ** (-30 / 20)]
    frames = frames - frames.mean(axis=1, keepdims=True)
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, n=2 * frame, axis=1)) ** 2, axis=1)
    low, high = int(sr / fmax), int(sr / fmin)
    lag = low + np.argmax(ac[:, low:high], axis=1)
    strength = ac[np.arange(lag.size), lag] / ac[:, 0]
    return sr / lag[strength >= min(0.5, np.median(strength))]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    """The default demo corpus, made once for the module."""
    return make_demo_corpus(tmp_path_factory.mktemp("demo") / "bundle")


@pytest.fixture(scope="module")
def demo_table(demo_root) -> list[dict]:
    return [{"relpath": relpath, **parse(relpath)} for relpath in wav_files(demo_root)]


@pytest.fixture(scope="module")
def demo_audio(demo_root, demo_table) -> dict:
    """relpath -> (samples, sample rate, soundfile info)."""
    audio = {}
    for row in demo_table:
        path = demo_root / row["relpath"]
        # float32 halves the memory of ~45 MB of 16-bit audio and is exact for 16-bit samples.
        y, sr = soundfile.read(path, dtype="float32")
        audio[row["relpath"]] = (y, sr, soundfile.info(path))
    return audio


# ## Layout and names ------------------------------------------------------------------------------
def test_returns_root_and_writes_only_corpora_and_marker(demo_root):
    assert isinstance(demo_root, Path)
    expected = ["Crema", "Ravdess", "Savee", "Tess", MARKER_NAME]
    assert sorted(p.name for p in demo_root.iterdir()) == sorted(expected)
    others = [p for p in demo_root.rglob("*") if p.is_file() and p.suffix != ".wav" and p.name != MARKER_NAME]
    assert others == [], "temporary or stray files left behind"


def test_every_file_follows_its_corpus_naming(demo_root):
    names = wav_files(demo_root)
    unparsed = []
    for name in names:
        try:
            parse(name)
        except ValueError as error:
            unparsed.append(str(error))
    assert names and unparsed == []
    assert {parse(name)["corpus"] for name in names} == set(DEMO_SAMPLE_RATES)


def test_all_eight_emotions_and_the_real_corpora_emotion_sets(demo_table):
    by_corpus = {c: {r["emotion"] for r in demo_table if r["corpus"] == c} for c in DEMO_SAMPLE_RATES}
    assert set().union(*by_corpus.values()) == set(EMOTIONS)
    assert by_corpus["CREMA-D"] == set(EMOTIONS) - {"calm", "surprise"}
    assert by_corpus["RAVDESS"] == set(EMOTIONS)
    assert by_corpus["SAVEE"] == set(EMOTIONS) - {"calm"}
    assert by_corpus["TESS"] == set(EMOTIONS) - {"calm"}


def test_default_size_is_balanced(demo_table):
    counts = Counter((r["corpus"], r["emotion"]) for r in demo_table)
    assert set(counts.values()) == {8}, counts
    assert Counter(r["corpus"] for r in demo_table) == {"CREMA-D": 48, "RAVDESS": 64, "SAVEE": 56, "TESS": 56}


def test_speakers_per_corpus(demo_table):
    speakers = {c: sorted({r["speaker"] for r in demo_table if r["corpus"] == c}) for c in DEMO_SAMPLE_RATES}
    assert speakers == {
        "CREMA-D": ["1001", "1002", "1003", "1004"],
        "RAVDESS": ["01", "02", "03", "04"],
        "SAVEE": ["DC", "JE", "JK", "KL"],
        "TESS": ["OAF", "YAF"],
    }


def test_crema_levels_are_xx_except_on_ieo(demo_table):
    matches = [r["match"] for r in demo_table if r["corpus"] == "CREMA-D"]
    assert all(m["level"] == "XX" for m in matches if m["sentence"] != "IEO")
    assert Counter(m["level"] for m in matches).most_common(1)[0][0] == "XX"
    assert "Crema/1001_DFA_ANG_XX.wav" in {r["relpath"] for r in demo_table}


def test_ravdess_fields(demo_table):
    for row in (r for r in demo_table if r["corpus"] == "RAVDESS"):
        m = row["match"]
        assert m["actor"] in {f"{i:02d}" for i in range(1, 25)}
        if row["emotion"] == "neutral":
            assert m["intensity"] == "01", "RAVDESS has no strong neutral"
    intensities = {r["match"]["intensity"] for r in demo_table if r["corpus"] == "RAVDESS"}
    assert intensities == {"01", "02"}


def test_tess_folders_and_quirks(demo_root, demo_table):
    tess = [r for r in demo_table if r["corpus"] == "TESS"]
    assert {r["match"]["folder"] for r in tess} == set(TESS_FOLDERS)
    for row in tess:
        m = row["match"]
        suffix_emotion = TESS_SUFFIXES.get(m["emotion"], m["emotion"])
        assert suffix_emotion == row["emotion"], row["relpath"]
        assert m["folder"].startswith(m["speaker"]), row["relpath"]
    assert (demo_root / "Tess/OAF_neutral/OA_bite_neutral.wav").is_file()
    assert not (demo_root / "Tess/OAF_neutral/OAF_bite_neutral.wav").exists()
    for name in ("Tess/OAF_angry/OAF_back_angry.wav", "Tess/YAF_fear/YAF_dog_fear.wav"):
        assert (demo_root / name).is_file()
    assert (demo_root / "Tess/OAF_Pleasant_surprise/OAF_bite_ps.wav").is_file()


# ## Audio -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("corpus", sorted(DEMO_SAMPLE_RATES))
def test_native_rate_16_bit_mono_and_duration(corpus, demo_table, demo_audio):
    rows = [r for r in demo_table if r["corpus"] == corpus]
    for row in rows:
        y, sr, info = demo_audio[row["relpath"]]
        assert sr == DEMO_SAMPLE_RATES[corpus]
        assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
        assert 2.5 <= info.duration <= 3.5 + 1 / sr, row["relpath"]


def test_audio_is_finite_audible_and_not_clipping(demo_audio):
    for relpath, (y, _, _) in demo_audio.items():
        peak = np.max(np.abs(y))
        assert np.all(np.isfinite(y)), relpath
        assert peak > 0.02, f"{relpath} is nearly silent (peak {peak:.4f})"
        assert peak < 0.99, f"{relpath} clips (peak {peak:.4f})"
        assert np.mean(np.abs(y) > 0.9) < 1e-3, relpath


def test_clips_are_not_copies_of_each_other(demo_root, demo_table):
    openings = {(demo_root / r["relpath"]).read_bytes()[44:2000] for r in demo_table}
    assert len(openings) == len(demo_table)


@pytest.mark.parametrize("sr", sorted(set(DEMO_SAMPLE_RATES.values())))
def test_synthesize_utterance_shape_type_and_range(sr):
    voice = _VoiceProfile(f0_hz=120.0)
    rng = np.random.default_rng(0)
    y = _synthesize_utterance(voice, _EMOTION_PROFILES["neutral"], sr=sr, duration=2.7, rng=rng)
    assert y.dtype == np.float32 and y.shape == (round(2.7 * sr),)
    assert np.all(np.isfinite(y)) and 0.01 < np.max(np.abs(y)) <= 0.95


@pytest.mark.parametrize("sr, factor", [(16000, 1), (24414, 1), (44100, 2), (48000, 3), (32000, 2)])
def test_synthesis_runs_at_a_whole_fraction_of_the_rate(sr, factor):
    assert _upsampling_factor(sr) == factor


def test_frame_filter_with_a_flat_response_gives_the_signal_back():
    x = np.random.default_rng(0).standard_normal(16000 * 2 + 123)
    y = _filter_frames(x, lambda times, freqs: np.ones((times.size, freqs.size)), sr=16000)
    np.testing.assert_allclose(y, x, atol=1e-12)


@pytest.mark.parametrize("f0", [100.0, 130.0, 200.0, 240.0])
def test_synthesized_pitch_follows_the_voice(f0):
    voice = _VoiceProfile(f0_hz=f0, formant_scale=1.0 if f0 < 150 else 1.17)
    rng = np.random.default_rng(1)
    y = _synthesize_utterance(voice, _EMOTION_PROFILES["neutral"], sr=16000, duration=3.0, rng=rng)
    median = np.median(_autocorrelation_pitch(y.astype(float), 16000))
    # Neutral prosody moves around the habitual pitch; the median stays within ~3 semitones.
    assert abs(12 * np.log2(median / f0)) < 3.0, median


def test_emotions_shift_loudness_and_pitch_the_way_they_should():
    voice = _VoiceProfile(f0_hz=120.0)

    def render(emotion):
        rng = np.random.default_rng(2)
        y = _synthesize_utterance(voice, _EMOTION_PROFILES[emotion], sr=16000, duration=3.0, rng=rng).astype(float)
        return 20 * np.log10(np.sqrt(np.mean(y**2))), np.median(_autocorrelation_pitch(y, 16000))

    (angry_db, angry_f0), (sad_db, sad_f0), (_, fear_f0) = (render(e) for e in ("angry", "sad", "fear"))
    assert angry_db - sad_db > 10.0
    assert angry_f0 > sad_f0 and fear_f0 > sad_f0


def test_intensity_scales_away_from_neutral():
    angry, neutral = _EMOTION_PROFILES["angry"], _EMOTION_PROFILES["neutral"]
    assert _scale_profile(angry, 0.0).gain_db == pytest.approx(neutral.gain_db)
    assert _scale_profile(angry, 1.0) == angry
    assert _scale_profile(angry, 1.3).gain_db > angry.gain_db


@pytest.mark.parametrize(
    "kwargs, match",
    [({"sr": 8000}, r"sr=8000: expected an integer sample rate of at least 16000"),
     ({"sr": 22050.0}, r"sr=22050.0: expected an integer"),
     ({"duration": 0.2}, r"duration=0.2: expected between 1 and 10 seconds")],
)  # fmt: skip
def test_synthesize_utterance_rejects_bad_input(kwargs, match):
    options = {"sr": 16000, "duration": 3.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        _synthesize_utterance(_VoiceProfile(), _EMOTION_PROFILES["neutral"], rng=np.random.default_rng(0), **options)


# ## Determinism, reuse and safety -----------------------------------------------------------------
def read_all(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """A small demo corpus (seed 0) that the tests below only read or copy."""
    return make_demo_corpus(tmp_path_factory.mktemp("small") / "demo", seed=0, **SMALL)


def test_same_seed_gives_identical_bytes_and_another_seed_other_audio(small_root, tmp_path, capsys):
    existing_empty = tmp_path / "b"
    existing_empty.mkdir()
    same = read_all(make_demo_corpus(existing_empty, seed=0, **SMALL))
    assert capsys.readouterr().err == "", "progress must be off by default"
    other = read_all(make_demo_corpus(tmp_path / "c", seed=1, progress=True, **SMALL))
    assert "Demo corpus" in capsys.readouterr().err
    first = read_all(small_root)
    assert same == first
    wavs = [name for name in first if name.endswith(".wav")]
    assert len(wavs) == 35
    assert other.keys() == first.keys()
    assert all(other[name] != first[name] for name in wavs)


def test_marker_records_the_settings(small_root):
    marker = json.loads((small_root / MARKER_NAME).read_text())
    assert marker["seed"] == 0 and marker["complete"] is True
    assert marker["speakers_per_corpus"] == 1 and marker["clips_per_emotion"] == 1
    assert marker["n_files"] == len(wav_files(small_root))
    assert isinstance(marker["version"], int)
    assert marker["sample_rates"] == DEMO_SAMPLE_RATES


def test_rerun_with_same_settings_rewrites_nothing(small_root):
    stamps = {p: p.stat().st_mtime_ns for p in small_root.rglob("*")}
    assert make_demo_corpus(str(small_root), seed=0, **SMALL) == small_root
    assert {p: p.stat().st_mtime_ns for p in small_root.rglob("*")} == stamps


def test_interrupted_run_is_finished_not_trusted(small_root, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(small_root, root)
    # What a run killed halfway leaves: the marker still says incomplete, some files are missing.
    marker = json.loads((root / MARKER_NAME).read_text())
    (root / MARKER_NAME).write_text(json.dumps({**marker, "complete": False}))
    for path in sorted(root.rglob("*.wav"))[::3]:
        path.unlink()
    make_demo_corpus(root, seed=0, **SMALL)
    assert read_all(root) == read_all(small_root)


def test_other_settings_in_a_demo_folder_raise(small_root):
    before = read_all(small_root)
    expected = r"already holds a demo corpus made with .*'seed': 0.*empty or new folder"
    with pytest.raises(FileExistsError, match=expected):
        make_demo_corpus(small_root, seed=1, **SMALL)
    with pytest.raises(FileExistsError, match=expected):
        make_demo_corpus(small_root, seed=0, speakers_per_corpus=2, clips_per_emotion=1)
    assert read_all(small_root) == before


def test_foreign_folder_is_left_alone(tmp_path):
    root = tmp_path / "my_recordings"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    expected = r"not empty \(notes.txt\).*never overwrites.*empty or new folder"
    with pytest.raises(FileExistsError, match=expected):
        make_demo_corpus(root, **SMALL)
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
    assert (root / "notes.txt").read_text() == "mine"


def test_unreadable_marker_and_file_root_raise(tmp_path):
    root = tmp_path / "demo"
    root.mkdir()
    (root / MARKER_NAME).write_text("not json")
    with pytest.raises(FileExistsError, match="not a readable demo-corpus marker"):
        make_demo_corpus(root, **SMALL)
    file_root = tmp_path / "file.wav"
    file_root.write_bytes(b"RIFF")
    with pytest.raises(FileExistsError, match="is a file: expected a missing or empty folder"):
        make_demo_corpus(file_root, **SMALL)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"seed": -1}, r"seed=-1: expected an integer from 0"),
     ({"seed": 1.5}, r"seed=1.5: expected an integer"),
     ({"speakers_per_corpus": 0}, r"speakers_per_corpus=0: expected an integer from 1 to 24"),
     ({"speakers_per_corpus": 25}, r"speakers_per_corpus=25: expected an integer from 1 to 24"),
     ({"clips_per_emotion": 0}, r"clips_per_emotion=0: expected an integer from 1 to 8"),
     ({"clips_per_emotion": 9}, r"clips_per_emotion=9: expected an integer from 1 to 8"),
     ({"clips_per_emotion": True}, r"clips_per_emotion=True: expected an integer")],
)  # fmt: skip
def test_bad_options_raise_before_writing(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_demo_corpus(tmp_path / "demo", **kwargs)
    assert not (tmp_path / "demo").exists()


# ## Learnability ----------------------------------------------------------------------------------
def simple_features(y: np.ndarray, sr: int) -> np.ndarray:
    """Level, spectral centroid, zero-crossing rate, pitch level and range, speech fraction, duration."""
    frame = 2 ** int(round(np.log2(0.04 * sr)))
    frames = np.lib.stride_tricks.sliding_window_view(y, frame)[:: int(0.02 * sr)]
    energy = np.sqrt(np.mean(frames**2, axis=1))
    active = energy > energy.max() * 10 ** (-30 / 20)
    spectrum = np.abs(np.fft.rfft(frames[active] * np.hanning(frame), axis=1))
    centroid = spectrum @ np.fft.rfftfreq(frame, 1 / sr) / spectrum.sum(axis=1)
    crossings = np.mean(np.diff(np.signbit(frames[active]), axis=1), axis=1) * sr
    log_f0 = np.log2(_autocorrelation_pitch(y, sr))
    return np.array([
        20 * np.log10(np.mean(energy[active])),
        np.log2(np.median(centroid)),
        np.log2(np.median(crossings)),
        np.median(log_f0),
        np.percentile(log_f0, 90) - np.percentile(log_f0, 10),
        active.mean(),
        y.size / sr,
    ])  # fmt: skip


def test_emotion_is_learnable_across_speakers(demo_table, demo_audio):
    """A nearest-centroid classifier on seven crude features, trained on half of the speakers of
    every corpus, recognises the emotion of the other half far above chance."""
    clips = (demo_audio[r["relpath"]] for r in demo_table)
    X = np.array([simple_features(samples.astype(float), sr) for samples, sr, _ in clips])
    y = np.array([r["emotion"] for r in demo_table])
    speakers = {c: sorted({r["speaker"] for r in demo_table if r["corpus"] == c}) for c in DEMO_SAMPLE_RATES}
    half = np.array([speakers[r["corpus"]].index(r["speaker"]) % 2 for r in demo_table])
    accuracies = []
    for held_out in (0, 1):
        train, test = half != held_out, half == held_out
        mean, std = X[train].mean(axis=0), X[train].std(axis=0)
        Z = (X - mean) / std
        centroids = np.array([Z[train & (y == e)].mean(axis=0) for e in EMOTIONS])
        distances = ((Z[test][:, None, :] - centroids[None]) ** 2).sum(axis=-1)
        accuracies.append(np.mean(np.array(EMOTIONS)[distances.argmin(axis=1)] == y[test]))
    chance = 1 / len(EMOTIONS)
    # Seeds 0-9 give 0.44-0.63 per fold; twice chance (0.25) leaves a wide margin.
    assert min(accuracies) > 2 * chance, accuracies


def test_join_clips_makes_one_recording_with_pauses_and_keeps_existing_files(tmp_path):
    import soundfile as sf

    from ser_lib.demo import join_clips

    clips = []
    for index, seconds in enumerate((1.0, 2.0)):
        clips.append(tmp_path / f"clip{index}.wav")
        sf.write(clips[-1], 0.3 * np.sin(np.linspace(0, 2000, int(seconds * 16000))), 16000)
    joined = join_clips(clips, tmp_path / "long.wav", pause_seconds=0.5)
    info = sf.info(joined)
    assert info.samplerate == 22050 and abs(info.duration - (1.0 + 2.0 + 3 * 0.5)) < 0.01
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        join_clips(clips, joined)


BUNDLE_FILES = [  # real names of the Kaggle bundle (its quirks included), with their labels
    ("Crema/1001_DFA_ANG_XX.wav", "CREMA-D", "1001", "angry"),
    ("Crema/1002_IEO_SAD_HI.wav", "CREMA-D", "1002", "sad"),
    ("Ravdess/audio_speech_actors_01-24/Actor_01/03-01-02-02-01-01-01.wav", "RAVDESS", "Actor_01", "calm"),
    ("Ravdess/audio_speech_actors_01-24/Actor_02/03-01-08-01-02-02-02.wav", "RAVDESS", "Actor_02", "surprise"),
    ("Savee/DC_a01.wav", "SAVEE", "DC", "angry"),
    ("Savee/JK_su03.wav", "SAVEE", "JK", "surprise"),
    ("Tess/OAF_neutral/OA_bite_neutral.wav", "TESS", "OAF", "neutral"),
    ("Tess/YAF_pleasant_surprised/YAF_dog_ps.wav", "TESS", "YAF", "surprise"),
]


def test_a_corpus_like_a_list_of_files_holds_those_files_with_those_labels(tmp_path):
    import pandas as pd

    from ser_lib.corpora import scan_corpora

    files = pd.DataFrame(BUNDLE_FILES, columns=["path", "corpus", "speaker", "emotion"])
    listing = tmp_path / "files.csv"
    files.to_csv(listing, index=False)
    root = make_demo_corpus(tmp_path / "like", seed=3, like=listing, n_jobs=2)
    table = scan_corpora(root)
    table["path"] = [Path(p).relative_to(root).as_posix() for p in table["path"]]
    merged = files.merge(table, on="path", suffixes=("", "_read"))
    assert len(merged) == len(files) == len(table)
    assert (merged["corpus"] == merged["corpus_read"]).all() and (merged["emotion"] == merged["emotion_read"]).all()
    assert (merged["speaker"] == merged["speaker_read"]).all()
    rates = {soundfile.info(root / path).samplerate for path in files.loc[files["corpus"] == "RAVDESS", "path"]}
    assert rates == {DEMO_SAMPLE_RATES["RAVDESS"]}
    marker = json.loads((root / MARKER_NAME).read_text())
    assert marker["complete"] and marker["n_files"] == len(files) and marker["like"]
    # The same list again: nothing to do; another list in the same folder is refused.
    assert make_demo_corpus(root, seed=3, like=files) == root
    with pytest.raises(FileExistsError, match="already holds a demo corpus"):
        make_demo_corpus(root, seed=3, like=files.head(3))


def test_a_list_of_files_it_cannot_make_is_refused_with_the_row(tmp_path):
    import pandas as pd

    bad = pd.DataFrame([("Savee/DC_x01.wav", "SAVEE", "DC", "bored")], columns=["path", "corpus", "speaker", "emotion"])
    with pytest.raises(ValueError, match=r"Cannot make 'Savee/DC_x01.wav': expected .* got 'SAVEE' and 'bored'"):
        make_demo_corpus(tmp_path / "bad", like=bad)
    with pytest.raises(ValueError, match="missing \\['speaker'\\]"):
        make_demo_corpus(tmp_path / "bad", like=bad.drop(columns="speaker"))
