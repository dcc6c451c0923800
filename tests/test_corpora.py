import warnings

import pandas as pd
import pytest

from ser_lib.corpora import EMOTIONS, parse_path, scan_corpora


@pytest.mark.parametrize(
    "path, corpus, speaker, emotion",
    [
        ("Ravdess/audio_speech_actors_01-24/Actor_01/03-01-01-01-01-01-01.wav", "RAVDESS", "Actor_01", "neutral"),
        ("Actor_12/03-01-02-02-01-02-12.wav", "RAVDESS", "Actor_12", "calm"),
        ("Actor_24/03-01-08-02-02-02-24.flac", "RAVDESS", "Actor_24", "surprise"),
        ("x/03-01-06-01-01-01-07.wav", "RAVDESS", "Actor_07", "fear"),
        ("Crema/1001_DFA_ANG_XX.wav", "CREMA-D", "1001", "angry"),
        ("AudioWAV/1091_IEO_HAP_HI.wav", "CREMA-D", "1091", "happy"),
        ("Crema/1050_TIE_NEU_XX.wav", "CREMA-D", "1050", "neutral"),
        ("Crema/1076_MTI_SAD_XX.wav", "CREMA-D", "1076", "sad"),
        ("Crema/1002_ITS_DIS_MD.wav", "CREMA-D", "1002", "disgust"),
        ("Crema/1003_WSI_FEA_LO.wav", "CREMA-D", "1003", "fear"),
        ("Savee/DC_a01.wav", "SAVEE", "DC", "angry"),
        ("Savee/JE_sa03.wav", "SAVEE", "JE", "sad"),
        ("Savee/JK_su15.wav", "SAVEE", "JK", "surprise"),
        ("ALL/KL_n30.wav", "SAVEE", "KL", "neutral"),
        ("Savee/DC_d01.wav", "SAVEE", "DC", "disgust"),
        ("Savee/DC_f01.wav", "SAVEE", "DC", "fear"),
        ("Savee/DC_h01.wav", "SAVEE", "DC", "happy"),
        ("AudioData/JE/sa01.wav", "SAVEE", "JE", "sad"),
        ("AudioData/KL/su07.wav", "SAVEE", "KL", "surprise"),
        ("Tess/OAF_angry/OAF_back_angry.wav", "TESS", "OAF", "angry"),
        ("Tess/OAF_Fear/OAF_bar_fear.wav", "TESS", "OAF", "fear"),
        ("Tess/OAF_Pleasant_surprise/OAF_base_ps.wav", "TESS", "OAF", "surprise"),
        ("Tess/YAF_pleasant_surprised/YAF_bath_ps.wav", "TESS", "YAF", "surprise"),
        ("Tess/OAF_Sad/OAF_bean_sad.wav", "TESS", "OAF", "sad"),
        ("Tess/YAF_disgust/YAF_beg_disgust.wav", "TESS", "YAF", "disgust"),
        ("Tess/OAF_neutral/OA_bite_neutral.wav", "TESS", "OAF", "neutral"),
        ("Tess/YAF_happy/YAF_boat_happy.wav", "TESS", "YAF", "happy"),
    ],
)
def test_every_corpus_name_parses_to_its_labels(path, corpus, speaker, emotion):
    labels = parse_path(path)
    assert (labels["corpus"], labels["speaker"], labels["emotion"]) == (corpus, speaker, emotion)
    assert labels["emotion"] in EMOTIONS


def test_names_carry_gender_intensity_and_sentence():
    male = parse_path("Actor_07/03-01-05-02-01-01-07.wav")
    female = parse_path("Actor_08/03-01-05-01-02-01-08.wav")
    assert (male["gender"], male["intensity"]) == ("male", "strong")
    assert (female["gender"], female["intensity"]) == ("female", "normal")
    assert male["sentence"] != female["sentence"]
    assert parse_path("Crema/1001_DFA_ANG_HI.wav")["intensity"] == "high"
    assert parse_path("Savee/DC_a01.wav")["gender"] == "male"
    assert parse_path("Tess/YAF_sad/YAF_dog_sad.wav")["gender"] == "female"


@pytest.mark.parametrize(
    "name, match",
    [
        ("README.wav", "Cannot parse the emotion from 'README.wav'"),
        ("03-01-09-01-01-01-01.wav", "emotion code '09'"),
        ("1001_DFA_XYZ_XX.wav", "emotion code 'XYZ'"),
        ("OAF_back_bored.wav", "ends in 'bored'"),
        ("DC_x01.wav", "Cannot parse"),
        ("03-01-01-01-01-01.wav", "Cannot parse"),
        ("sa01.wav", "Cannot parse"),  # a SAVEE code without a speaker folder
    ],
)
def test_bad_names_are_refused_with_the_reason(name, match):
    with pytest.raises(ValueError, match=match):
        parse_path(name)


def _touch(root, *relative):
    for path in relative:
        path = root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_scan_finds_the_bundle_layout_and_skips_unparsable_names_loudly(tmp_path):
    _touch(
        tmp_path,
        "bundle/Crema/1001_DFA_ANG_XX.wav",
        "bundle/Ravdess/audio_speech_actors_01-24/Actor_02/03-01-02-01-01-01-02.wav",
        "bundle/Savee/DC_su01.wav",
        "bundle/Tess/YAF_pleasant_surprised/YAF_back_ps.wav",
        "bundle/Tess/YAF_pleasant_surprised/notes.txt",  # not audio: not a skipped clip either
        "bundle/Crema/mystery.wav",
    )
    with pytest.warns(UserWarning, match="Skipped 1 of 5 audio files"):
        table, skipped = scan_corpora(tmp_path, return_skipped=True)
    assert sorted(table["corpus"]) == ["CREMA-D", "RAVDESS", "SAVEE", "TESS"]
    assert list(skipped["path"].str.rsplit("/", n=1).str[-1]) == ["mystery.wav"]
    assert "Cannot parse" in skipped["reason"].iloc[0]
    assert table["path"].is_monotonic_increasing


def test_scan_finds_each_corpus_in_its_own_distribution_layout(tmp_path):
    _touch(
        tmp_path,
        "RAVDESS/Actor_01/03-01-05-01-01-01-01.flac",
        "CREMA-D/AudioWAV/1012_IEO_FEA_LO.wav",
        "SAVEE/ALL/JK_h01.wav",
        "SAVEE/AudioData/KL/sa05.wav",
        "TESS Toronto emotional speech set data/OAF_Fear/OAF_back_fear.wav",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = scan_corpora(tmp_path)
    assert set(zip(table["corpus"], table["speaker"], table["emotion"])) == {
        ("CREMA-D", "1012", "fear"), ("RAVDESS", "Actor_01", "angry"), ("SAVEE", "JK", "happy"),
        ("SAVEE", "KL", "sad"), ("TESS", "OAF", "fear"),
    }


def test_fold_calm_relabels_calm_as_neutral(tmp_path):
    _touch(tmp_path, "Actor_01/03-01-02-01-01-01-01.wav", "Actor_01/03-01-01-01-01-01-01.wav")
    assert sorted(scan_corpora(tmp_path)["emotion"]) == ["calm", "neutral"]
    assert sorted(scan_corpora(tmp_path, fold_calm=True)["emotion"]) == ["neutral", "neutral"]


def test_scan_of_a_missing_or_empty_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="No folder at"):
        scan_corpora(tmp_path / "nowhere")
    _touch(tmp_path, "file.wav")
    with pytest.raises(NotADirectoryError, match="is a file"):
        scan_corpora(tmp_path / "file.wav")
    (tmp_path / "empty").mkdir()
    table = scan_corpora(tmp_path / "empty")
    assert isinstance(table, pd.DataFrame) and len(table) == 0 and "emotion" in table.columns


def test_load_corpus_caps_files_per_corpus_with_a_seeded_sample(tmp_path):
    from ser_lib.corpora import load_corpus

    _touch(tmp_path, *[f"Actor_01/03-01-0{e}-01-01-0{r}-01.wav" for e in range(1, 9) for r in (1, 2)],
           *[f"Crema/1001_DFA_{code}_XX.wav" for code in ("ANG", "DIS", "FEA")])
    table, skipped = load_corpus(tmp_path, max_per_corpus=5, seed=3)
    assert table.groupby("corpus").size().to_dict() == {"CREMA-D": 3, "RAVDESS": 5}
    assert table.attrs["root"] == str(tmp_path) and len(skipped) == 0
    pd.testing.assert_frame_equal(table, load_corpus(tmp_path, max_per_corpus=5, seed=3)[0])
    with pytest.raises(ValueError, match="Found no audio of the four corpora"):
        load_corpus(_empty(tmp_path))


def _empty(tmp_path):
    (tmp_path / "nothing").mkdir()
    return tmp_path / "nothing"
