"""The README's charts: the notebook run headless on real speech, its main charts copied here, small.

    python docs/readme_charts.py [--data ../shared/data/ravdess_dev]   (or: make readme-charts)

The data are the 16 real RAVDESS actors of ``../shared/data/ravdess_dev`` (960 clips; not part of
this repository). The notebook runs with its defaults (the original recipe, unseen-speaker split,
the fusion recipe beside it) into a temporary folder; the charts the README shows are written to
``docs/images/`` as palette PNGs of at most 300 KB each.
"""

import argparse
import tempfile
import time
from pathlib import Path

import papermill
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHARTS = ("07_confusion_matrix", "08_split_comparison", "09_reliability", "13_timeline")
MAX_BYTES = 300_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ravdess_dev")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"error: no folder at '{args.data}': expected the real RAVDESS actors (ravdess_dev).")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        start = time.perf_counter()
        papermill.execute_notebook(
            str(ROOT / "speech_emotion_recognition.ipynb"), str(work / "executed.ipynb"), kernel_name="python3",
            cwd=str(ROOT), progress_bar=True,
            parameters={"DATA_SOURCE": str(args.data.resolve()), "CHARTS_DIR": str(work / "charts"),
                        "OUTPUTS_DIR": str(work / "outputs"), "ARTIFACTS_DIR": str(work / "artifacts")},
        )
        print(f"notebook on {args.data}: {time.perf_counter() - start:.0f} s")
        args.out.mkdir(parents=True, exist_ok=True)
        for name in CHARTS:
            target = args.out / f"{name}.png"
            Image.open(work / "charts" / f"{name}.png").convert("RGB").quantize(colors=128).save(target, optimize=True)
            size = target.stat().st_size
            if size > MAX_BYTES:
                raise SystemExit(f"error: {target} is {size:,} bytes, expected at most {MAX_BYTES:,}.")
            print(f"{target.relative_to(ROOT)}: {size:,} bytes")


if __name__ == "__main__":
    main()
