# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean-run

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded synthetic demo corpus (offline): the notebook, headless.
demo: $(STAMP)
	$(VENV)/bin/papermill speech_emotion_recognition.ipynb speech_emotion_recognition.executed.ipynb \
		-p DATA_SOURCE demo --cwd . --progress-bar
	@echo "Executed notebook: speech_emotion_recognition.executed.ipynb; see charts/, outputs/, artifacts/"

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_features.py
