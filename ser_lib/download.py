"""The four-corpus Kaggle bundle, through kagglehub."""

from __future__ import annotations

import re
from pathlib import Path

# Pinned: kagglehub asks the API for the latest version of an unpinned handle before it looks at
# its cache, so only a pinned handle finds a downloaded copy without network.
KAGGLE_HANDLE = "dmitrybabko/speech-emotion-recognition-en/versions/1"


class DownloadError(RuntimeError):
    """The bundle could not be fetched; the message says what to do instead."""


def download_dataset(handle: str = KAGGLE_HANDLE, *, force: bool = False) -> Path:
    """Download the Kaggle bundle (about 1 GB, once) or find it in kagglehub's cache.

    Parameters
    ----------
    handle : str
        ``owner/dataset/versions/N``. The version must be given.
    force : bool
        Download again even if a complete copy is cached.

    Returns
    -------
    root : Path
        The folder holding ``Crema/``, ``Ravdess/``, ``Savee/`` and ``Tess/``; pass it to
        :func:`ser_lib.scan_corpora`.

    Raises
    ------
    ValueError
        The handle does not pin a version.
    DownloadError
        No cached copy and the download failed (offline, no access, interrupted).
    """
    if not re.fullmatch(r"[^/\s]+/[^/\s]+/versions/\d+", handle):
        raise ValueError(
            f"Expected a version-pinned Kaggle handle like {KAGGLE_HANDLE!r}, got {handle!r}: "
            "an unpinned handle needs the network even when a copy is cached."
        )
    import kagglehub  # imported here: it pulls in an HTTP stack nothing else needs

    try:
        return Path(kagglehub.dataset_download(handle, force_download=force))
    except Exception as error:  # requests, kagglehub and archive errors all end the same way
        raise DownloadError(
            f"Could not get the Kaggle bundle {handle!r} ({type(error).__name__}: {error}). "
            "kagglehub found no complete copy in its cache (KAGGLEHUB_CACHE, default ~/.cache/kagglehub) "
            "and could not download one. Use a local copy instead (scan_corpora('/path/to/bundle'), "
            "`ser train --data /path/to/bundle`, or the notebook parameter DATA_SOURCE='/path/to/bundle'), "
            "or the offline synthetic demo corpus (DATA_SOURCE='demo')."
        ) from error
