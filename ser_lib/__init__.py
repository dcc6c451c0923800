"""ser_lib: speech emotion recognition on CREMA-D, TESS, RAVDESS and SAVEE.

``import ser_lib`` imports neither TensorFlow nor openSMILE: only training the original recipe
(and :func:`build_mlp`) imports TensorFlow, only the ``functionals_fusion`` recipe's features openSMILE.
"""

from ser_lib import conditions
from ser_lib.artifacts import bundle_info, load_bundle, save_bundle
from ser_lib.audio import AudioError, load_audio
from ser_lib.corpora import CORPORA, EMOTIONS, load_corpus, parse_path, scan_corpora
from ser_lib.demo import make_demo_corpus
from ser_lib.download import KAGGLE_HANDLE, download_dataset
from ser_lib.features import extract_features, extract_many
from ser_lib.model import EmotionModel
from ser_lib.predict import enroll_speaker, get_model, predict_emotion, predict_many
from ser_lib.recipes import RECIPES, get_recipe
from ser_lib.recipes.original import FEATURE_BLOCKS, FEATURE_NAMES, build_mlp
from ser_lib.recipes.original import SETTINGS as FEATURE_SETTINGS
from ser_lib.recipes.original import compute as compute_features
from ser_lib.stream import EmotionStream, replay
from ser_lib.training import TrainingRun, cross_corpus, make_split, protocol_comparison, train

__version__ = "0.1.0"

__all__ = [
    "AudioError", "CORPORA", "EMOTIONS", "EmotionModel", "EmotionStream", "FEATURE_BLOCKS", "FEATURE_NAMES", "FEATURE_SETTINGS",
    "KAGGLE_HANDLE", "RECIPES", "TrainingRun", "build_mlp", "bundle_info", "compute_features", "conditions", "cross_corpus",
    "download_dataset", "enroll_speaker", "extract_features", "extract_many", "get_model", "get_recipe", "load_audio", "load_bundle", "load_corpus",
    "make_demo_corpus", "make_split", "parse_path", "predict_emotion", "predict_many", "protocol_comparison",
    "replay", "save_bundle", "scan_corpora", "train",
]
