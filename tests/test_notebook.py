"""The notebook end to end through papermill, on a tiny demo corpus; what it writes; what its text claims."""

import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import ser_lib
from ser_lib import evaluate

papermill = pytest.importorskip("papermill")

NOTEBOOK = Path(__file__).parents[1] / "speech_emotion_recognition.ipynb"
ORIGINAL_CHARTS = [
    "01_emotion_distribution", "02_dataset_distribution_pie", "03_emotion_by_dataset_stacked",
    "04_emotion_dataset_heatmap", "05_emotion_by_dataset_grouped", "06_training_history", "07_confusion_matrix",
    "08_split_comparison", "09_reliability", "10_risk_coverage", "13_timeline", "16_live_stream",
]
ORIGINAL_OUTPUTS = [
    "emotion_distribution.csv", "dataset_distribution.csv", "classification_report.csv", "confusion_matrix.csv",
    "per_class_accuracy.csv", "training_history.csv", "test_results.json", "file_summary.txt",
    "per_corpus_metrics.csv", "split_comparison.csv", "skipped_files.csv", "recipe_comparison.csv",
]


@pytest.mark.slow
def test_notebook_runs_headless_on_the_demo_corpus_and_writes_everything(tmp_path):
    # The headline recipe is the fusion one and the original is compared: both recipes run, and the
    # features and model sections must describe the fusion recipe, not the 195 features and the MLP.
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(executed), kernel_name="python3", progress_bar=False,
        parameters={
            "DATA_SOURCE": "demo", "DEMO_DIR": str(tmp_path / "demo"), "DEMO_SPEAKERS": 4, "DEMO_CLIPS_PER_EMOTION": 1,
            # Cross-corpus training (4 more `best` trainings) is left to `make demo`, which runs every section, and
            # to test_training's test of ser_lib.cross_corpus: it would be a third of this test's time.
            "RECIPE": "best", "COMPARE_RECIPE": "original", "CROSS_CORPUS": False, "EPOCHS": 6, "WORKERS": 2, "SEED": 1,
            "CHARTS_DIR": str(tmp_path / "charts"), "OUTPUTS_DIR": str(tmp_path / "outputs"),
            "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        },
    )
    charts = sorted(p.stem for p in (tmp_path / "charts").glob("*.png"))
    assert set(ORIGINAL_CHARTS) <= set(charts)
    assert len([c for c in charts if c.startswith("12_audio_sample_")]) == 4
    outputs = tmp_path / "outputs"
    assert {p.name for p in outputs.iterdir()} >= set(ORIGINAL_OUTPUTS) and not (outputs / "cross_corpus.csv").exists()
    results = json.loads((outputs / "test_results.json").read_text())
    predictions = pd.read_csv(outputs / "test_predictions.csv")
    assert results["protocol"] == "speaker" and results["recipe"] == "functionals_fusion"
    assert results["n"] == len(predictions) and results["test_speakers"] == sorted(predictions["speaker"].unique())
    assert results["accuracy"] == pytest.approx((predictions["predicted"] == predictions["emotion"]).mean())
    comparison = pd.read_csv(outputs / "split_comparison.csv")
    assert set(comparison["protocol"]) == {"speaker", "random"} and "all" in set(comparison["corpus"])
    assert pd.read_csv(outputs / "recipe_comparison.csv")["recipe"].tolist() == ["functionals_fusion", "original"]
    # The adaptive mode: its table (per clip first, the run's own figure) and chart, and its test predictions.
    adaptation = pd.read_csv(outputs / "speaker_adaptation.csv")
    assert adaptation["condition"].tolist()[:2] == ["per clip", "all clips"] and "11_speaker_adaptation" in charts
    assert adaptation["accuracy"].iloc[0] == pytest.approx(results["accuracy"])
    assert adaptation["accuracy"].iloc[1] == pytest.approx(results["adaptive"]["accuracy"])
    assert len(pd.read_csv(outputs / "test_predictions_adapted.csv")) == len(predictions)
    # Recording conditions: every condition, per clip and adapted; clean per clip is the run's own figure.
    recordings = pd.read_csv(outputs / "recording_conditions.csv")
    assert set(recordings["recording"]) == {"clean", *ser_lib.conditions.CONDITIONS} and "15_recording_conditions" in charts
    assert recordings.loc[0, "accuracy"] == pytest.approx(results["accuracy"]) and (recordings["n"] == len(predictions)).all()
    model = ser_lib.load_bundle(tmp_path / "artifacts")
    assert model.classes == sorted(ser_lib.EMOTIONS) and model.recipe == "functionals_fusion"

    notebook = nbformat.read(executed, as_version=4)
    outputs_text = {index: " ".join(output.get("text", "") + json.dumps(output.get("data", {})) for output in cell.get("outputs", []))
                    for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    texts = " ".join(outputs_text.values())
    assert "Traceback" not in texts and "on a random split" in texts and "accuracy is" in texts
    # TensorFlow's C++ log lines stay out of the cells.
    assert not re.search(r"node_def_util|absl::InitializeLog|cuda_platform|[IWE]0000 \d\d:\d\d", texts)
    # The features and model sections follow RECIPE.
    features_cell, model_cell = (_cell_after(notebook, heading) for heading in ("## Features", "## Model"))
    assert "functionals_fusion" in outputs_text[features_cell] and "7784 features" in outputs_text[features_cell]
    assert "frame_egemaps" in outputs_text[model_cell] and "dense 1 (ReLU)" not in outputs_text[model_cell]


def _cell_after(notebook, heading) -> int:
    index = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "markdown" and cell.source.startswith(heading))
    return next(i for i in range(index + 1, len(notebook.cells)) if notebook.cells[i].cell_type == "code")


def test_the_parameters_cell_reads_whole_with_types():
    parameters = papermill.inspect_notebook(str(NOTEBOOK))
    assert {"DATA_SOURCE", "RECIPE", "DEMO_DIR", "CHARTS_DIR", "OUTPUTS_DIR", "ARTIFACTS_DIR"} <= set(parameters)
    untyped = [name for name, parameter in parameters.items() if parameter["inferred_type_name"] in ("None", "Unknown type")]
    assert untyped == [] and all(parameter["help"] for parameter in parameters.values())


def test_static_text_holds_no_measured_figures():
    # Numbers go stale in static text: the notebook writes them from its run or from the reference table.
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    figures = [(index, match) for index, cell in enumerate(notebook.cells) if cell.cell_type == "markdown"
               for match in re.findall(r"\d+(?:\.\d+)?\s?%", cell.source)]
    assert figures == []


def test_the_readme_shows_the_notebooks_reference_table():
    readme = (NOTEBOOK.parent / "README.md").read_text()
    assert evaluate.reference_results_markdown() in readme
    table = evaluate.reference_results()
    assert set(table["recipe"]) <= set(ser_lib.RECIPES) and table["command"].str.startswith("python benchmarks/").all()
