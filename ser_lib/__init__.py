"""ser_lib: speech emotion recognition on CREMA-D, TESS, RAVDESS and SAVEE.

``import ser_lib`` does not import TensorFlow: only :func:`train` (and :func:`build_mlp`) do.
"""

from ser_lib.artifacts import load_bundle, save_bundle
from ser_lib.corpora import CORPORA, EMOTIONS, load_corpus, parse_path, scan_corpora
from ser_lib.demo import make_demo_corpus
from ser_lib.download import KAGGLE_HANDLE, download_dataset
from ser_lib.features import (
    FEATURE_BLOCKS,
    FEATURE_NAMES,
    FEATURE_SETTINGS,
    AudioError,
    compute_features,
    extract_features,
    extract_many,
    load_audio,
)
from ser_lib.model import EmotionModel, build_mlp
from ser_lib.predict import get_model, predict_emotion, predict_many
from ser_lib.train import TrainingRun, cross_corpus, make_split, protocol_comparison, train

__version__ = "0.1.0"

__all__ = [
    "AudioError", "CORPORA", "EMOTIONS", "EmotionModel", "FEATURE_BLOCKS", "FEATURE_NAMES", "FEATURE_SETTINGS",
    "KAGGLE_HANDLE", "TrainingRun", "build_mlp", "compute_features", "cross_corpus", "download_dataset", "extract_features",
    "extract_many", "get_model", "load_audio", "load_bundle", "load_corpus", "make_demo_corpus", "make_split",
    "parse_path", "predict_emotion", "predict_many", "protocol_comparison", "save_bundle", "scan_corpora", "train",
]
