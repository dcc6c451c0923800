import time

import pytest

from ser_lib.download import KAGGLE_HANDLE, DownloadError, download_dataset


def test_offline_without_a_cached_copy_fails_fast_and_says_what_to_do(offline):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="Could not get the Kaggle bundle") as caught:
        download_dataset()
    assert time.monotonic() - start < 30
    message = str(caught.value)
    assert "DATA_SOURCE='demo'" in message and "--data" in message and KAGGLE_HANDLE in message


def test_offline_with_a_cached_copy_returns_it_without_network(offline):
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_dataset_handle

    handle = parse_dataset_handle(KAGGLE_HANDLE)
    cached = offline / "datasets" / "dmitrybabko" / "speech-emotion-recognition-en" / "versions" / "1"
    (cached / "Crema").mkdir(parents=True)
    Cache().mark_as_complete(handle)
    assert download_dataset() == cached


def test_an_unpinned_handle_is_refused():
    with pytest.raises(ValueError, match="version-pinned Kaggle handle"):
        download_dataset("dmitrybabko/speech-emotion-recognition-en")
