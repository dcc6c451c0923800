"""Find CREMA-D, TESS, RAVDESS and SAVEE under a folder and read the labels their file names carry.

Each corpus names its files in its own way; the names alone tell the corpus, so the corpora are
found wherever they lie under the root: in the Kaggle bundle's layout (``Crema/``,
``Ravdess/audio_speech_actors_01-24/Actor_XX/``, ``Savee/``, ``Tess/<folder>/``) or in each
corpus's own distribution (RAVDESS ``Actor_XX/``, CREMA-D ``AudioWAV/``, SAVEE ``ALL/`` or
``AudioData/<speaker>/``, TESS ``<speaker>_<emotion>/``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd

EMOTIONS = ("angry", "calm", "disgust", "fear", "happy", "neutral", "sad", "surprise")
CORPORA = ("CREMA-D", "TESS", "RAVDESS", "SAVEE")
AUDIO_EXTENSIONS = (".wav", ".flac")
COLUMNS = ("path", "corpus", "speaker", "emotion", "gender", "intensity", "sentence")

_RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fear", "07": "disgust", "08": "surprise",
}
_RAVDESS_SENTENCES = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_CREMA_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMA_INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
# Two-letter codes first: "sa" and "su" must not be read as "s" + digits.
_SAVEE_EMOTIONS = {"sa": "sad", "su": "surprise", "a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral"}
_TESS_EMOTIONS = {
    "angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
    "neutral": "neutral", "ps": "surprise", "sad": "sad",
}

_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_CREMA_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_SAVEE_NAME = re.compile(r"^(?:([A-Z]{2})_)?(sa|su|a|d|f|h|n)(\d\d)$")
_TESS_NAME = re.compile(r"^(OAF|YAF|OA|YA)_([A-Za-z]+)_([A-Za-z]+)$", re.IGNORECASE)
_TESS_FOLDER = re.compile(r"^(OAF|YAF)_", re.IGNORECASE)
_SAVEE_SPEAKER = re.compile(r"^[A-Z]{2}$")


def parse_path(path) -> dict:
    """Corpus, speaker, emotion and what else a file's name carries.

    Parameters
    ----------
    path : str or Path
        An audio file of one of the four corpora; only its name (and for TESS and SAVEE's
        ``AudioData/<speaker>/`` layout, its folder) is read.

    Returns
    -------
    labels : dict
        ``corpus``, ``speaker``, ``emotion``, ``gender``, ``intensity``, ``sentence``.

    Raises
    ------
    ValueError
        The name matches none of the corpora's conventions, or carries an unknown code.
    """
    path = Path(path)
    stem, folder = path.stem, path.parent.name
    for parse in (_parse_ravdess, _parse_crema, _parse_savee, _parse_tess):
        labels = parse(stem, folder)
        if labels is not None:
            return labels
    raise ValueError(
        f"Cannot parse the emotion from {path.name!r}: expected a name like RAVDESS "
        "'03-01-05-01-01-01-12.wav', CREMA-D '1001_DFA_ANG_XX.wav', SAVEE 'DC_a01.wav' "
        "or TESS 'OAF_back_angry.wav'."
    )


def _parse_ravdess(stem: str, folder: str) -> dict | None:
    match = _RAVDESS_NAME.match(stem)
    if match is None:
        return None
    _modality, _channel, emotion, intensity, statement, _repetition, actor = match.groups()
    if emotion not in _RAVDESS_EMOTIONS:
        raise ValueError(f"RAVDESS file {stem!r} has emotion code {emotion!r}: expected 01 to 08.")
    return {
        "corpus": "RAVDESS",
        "speaker": f"Actor_{actor}",
        "emotion": _RAVDESS_EMOTIONS[emotion],
        "gender": "male" if int(actor) % 2 else "female",
        "intensity": {"01": "normal", "02": "strong"}.get(intensity, intensity),
        "sentence": _RAVDESS_SENTENCES.get(statement, statement),
    }


def _parse_crema(stem: str, folder: str) -> dict | None:
    match = _CREMA_NAME.match(stem)
    if match is None:
        return None
    speaker, sentence, emotion, intensity = match.groups()
    if emotion not in _CREMA_EMOTIONS:
        raise ValueError(f"CREMA-D file {stem!r} has emotion code {emotion!r}: expected one of {sorted(_CREMA_EMOTIONS)}.")
    return {
        "corpus": "CREMA-D",
        "speaker": speaker,
        "emotion": _CREMA_EMOTIONS[emotion],
        # CREMA-D's names carry no gender (it is in the corpus's demographics table).
        "gender": None,
        "intensity": _CREMA_INTENSITIES.get(intensity, intensity),
        "sentence": sentence,
    }


def _parse_savee(stem: str, folder: str) -> dict | None:
    match = _SAVEE_NAME.match(stem)
    if match is None:
        return None
    speaker, code, number = match.groups()
    if speaker is None:
        # SAVEE's own AudioData/<speaker>/a01.wav layout: the speaker is the folder.
        if not _SAVEE_SPEAKER.match(folder):
            return None
        speaker = folder
    return {
        "corpus": "SAVEE",
        "speaker": speaker,
        "emotion": _SAVEE_EMOTIONS[code],
        "gender": "male",
        "intensity": None,
        "sentence": number,
    }


def _parse_tess(stem: str, folder: str) -> dict | None:
    match = _TESS_NAME.match(stem)
    if match is None:
        return None
    prefix, word, emotion = match.groups()
    emotion = emotion.lower()
    if emotion not in _TESS_EMOTIONS:
        raise ValueError(f"TESS file {stem!r} ends in {emotion!r}: expected one of {sorted(_TESS_EMOTIONS)}.")
    # One real file is 'OAF_neutral/OA_bite_neutral.wav': the folder names the speaker reliably.
    folder_match = _TESS_FOLDER.match(folder)
    speaker = folder_match.group(1).upper() if folder_match else {"OA": "OAF", "YA": "YAF"}.get(prefix.upper(), prefix.upper())
    return {
        "corpus": "TESS",
        "speaker": speaker,
        "emotion": _TESS_EMOTIONS[emotion],
        "gender": "female",
        "intensity": None,
        "sentence": word.lower(),
    }


def scan_corpora(root, *, fold_calm: bool = False, return_skipped: bool = False):
    """Every audio file of the four corpora under ``root``, with its labels.

    Parameters
    ----------
    root : str or Path
        A folder holding one or more of the corpora, in any of their layouts, at any depth.
    fold_calm : bool
        Relabel RAVDESS ``calm`` as ``neutral`` (seven classes), as some systems do.
    return_skipped : bool
        Also return the table of audio files whose names could not be parsed.

    Returns
    -------
    table : pd.DataFrame [columns: path, corpus, speaker, emotion, gender, intensity, sentence]
        One row per file, sorted by path; ``path`` is absolute.
    skipped : pd.DataFrame [columns: path, reason]
        Only with ``return_skipped``. Skipped files are also reported by a warning.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``root`` is missing or not a folder.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"No folder at '{root}': expected the root of the Kaggle bundle or of a corpus.")
    if not root.is_dir():
        raise NotADirectoryError(f"'{root}' is a file: expected a folder holding the corpora.")
    rows, skipped = [], []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
        try:
            labels = parse_path(path)
        except ValueError as error:
            skipped.append({"path": str(path.resolve()), "reason": str(error)})
            continue
        rows.append({"path": str(path.resolve()), **labels})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if fold_calm:
        table["emotion"] = table["emotion"].replace("calm", "neutral")
    skipped = pd.DataFrame(skipped, columns=["path", "reason"])
    if len(skipped):
        warnings.warn(
            f"Skipped {len(skipped)} of {len(rows) + len(skipped)} audio files under '{root}' whose names "
            f"could not be parsed, e.g. {skipped['reason'].iloc[0]}",
            stacklevel=2,
        )
    return (table, skipped) if return_skipped else table


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Clips per emotion (rows) and corpus (columns), with totals: the table every chart starts from."""
    counts = pd.crosstab(table["emotion"], table["corpus"], margins=True, margins_name="total")
    return counts


def load_corpus(
    source="demo",
    *,
    fold_calm: bool = False,
    max_per_corpus: int | None = None,
    seed: int = 0,
    demo_dir="dataset/demo",
    demo_options: dict | None = None,
    progress: bool = True,
):
    """The labelled file table of a data source, and the files it skipped.

    Parameters
    ----------
    source : str or Path
        ``"kaggle"`` (the bundle through kagglehub), ``"demo"`` (the synthetic demo corpus, made in
        ``demo_dir`` if it is not there yet) or a folder holding any of the four corpora.
    fold_calm : bool
        Relabel calm as neutral.
    max_per_corpus : int, optional
        Keep at most this many files of each corpus (a seeded sample, for quick runs).
    seed : int
        For the demo corpus and the sample.
    demo_dir, demo_options
        Where the demo corpus is made, and options for :func:`ser_lib.make_demo_corpus`.

    Returns
    -------
    table : pd.DataFrame
        As :func:`scan_corpora`, with the source's root in ``table.attrs["root"]``.
    skipped : pd.DataFrame [columns: path, reason]
    """
    if str(source) == "kaggle":
        from ser_lib.download import download_dataset

        root = download_dataset()
    elif str(source) == "demo":
        from ser_lib.demo import make_demo_corpus

        root = make_demo_corpus(demo_dir, seed=seed, progress=progress, **(demo_options or {}))
    else:
        root = Path(source)
    table, skipped = scan_corpora(root, fold_calm=fold_calm, return_skipped=True)
    if len(table) == 0:
        raise ValueError(f"Found no audio of the four corpora under '{root}': expected .wav or .flac files with their names.")
    if max_per_corpus is not None:
        shuffled = table.sample(frac=1.0, random_state=seed)
        table = shuffled.groupby("corpus").head(max_per_corpus).sort_values("path").reset_index(drop=True)
    table.attrs["root"] = str(root)
    return table, skipped
