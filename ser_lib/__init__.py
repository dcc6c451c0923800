"""ser_lib: speech emotion recognition on CREMA-D, TESS, RAVDESS and SAVEE."""

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

__version__ = "0.1.0"
