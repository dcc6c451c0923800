"""The notebook end to end through papermill, on a tiny demo corpus, and what it writes."""

import json

import nbformat
import pandas as pd
import pytest

import ser_lib

papermill = pytest.importorskip("papermill")

ORIGINAL_CHARTS = [
    "01_emotion_distribution", "02_dataset_distribution_pie", "03_emotion_by_dataset_stacked",
    "04_emotion_dataset_heatmap", "05_emotion_by_dataset_grouped", "06_training_history", "07_confusion_matrix",
    "08_split_comparison", "09_reliability", "10_risk_coverage", "13_timeline",
]
ORIGINAL_OUTPUTS = [
    "emotion_distribution.csv", "dataset_distribution.csv", "classification_report.csv", "confusion_matrix.csv",
    "per_class_accuracy.csv", "training_history.csv", "test_results.json", "file_summary.txt",
    "per_corpus_metrics.csv", "split_comparison.csv", "skipped_files.csv", "cross_corpus.csv", "recipe_comparison.csv",
]


@pytest.mark.slow
def test_notebook_runs_headless_on_the_demo_corpus_and_writes_everything(tmp_path):
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        "speech_emotion_recognition.ipynb", str(executed), kernel_name="python3", progress_bar=False,
        parameters={
            "DATA_SOURCE": "demo", "DEMO_DIR": str(tmp_path / "demo"), "DEMO_SPEAKERS": 4, "DEMO_CLIPS_PER_EMOTION": 1,
            "EPOCHS": 6, "WORKERS": 2, "SEED": 1, "CHARTS_DIR": str(tmp_path / "charts"),
            "OUTPUTS_DIR": str(tmp_path / "outputs"), "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        },
    )
    charts = sorted(p.stem for p in (tmp_path / "charts").glob("*.png"))
    assert set(ORIGINAL_CHARTS) <= set(charts)
    assert len([c for c in charts if c.startswith("12_audio_sample_")]) == 4
    outputs = tmp_path / "outputs"
    assert {p.name for p in outputs.iterdir()} >= set(ORIGINAL_OUTPUTS)
    results = json.loads((outputs / "test_results.json").read_text())
    assert results["protocol"] == "speaker" and 0 <= results["accuracy"] <= 1
    comparison = pd.read_csv(outputs / "split_comparison.csv")
    assert set(comparison["protocol"]) == {"speaker", "random"} and "all" in set(comparison["corpus"])
    model = ser_lib.load_bundle(tmp_path / "artifacts")
    assert model.classes == sorted(ser_lib.EMOTIONS)
    notebook = nbformat.read(executed, as_version=4)
    texts = " ".join(
        output.get("text", "") + json.dumps(output.get("data", {}))
        for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    )
    assert "Traceback" not in texts and "on a random split" in texts and "accuracy is" in texts
