# Two entry points, each sets itself up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= mnist_data
MODEL_DIR ?= models/mnist

.PHONY: demo test serve clean

# The virtualenv is rebuilt only when requirements.txt or pyproject.toml changes: the tested pins, then this
# package itself, editable (the console script mnist-folders; no PYTHONPATH needed).
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

demo: $(VENV)/.installed
	$(PY) parse_mnist.py --out $(DATA)
	$(PY) mnist_keras.py --mode train --data-dir $(DATA) --model-dir $(MODEL_DIR)
	$(PY) mnist_keras.py --mode evaluate --data-dir $(DATA) --model-dir $(MODEL_DIR)
	$(PY) mnist_keras.py --mode predict --data-dir $(DATA) --model-dir $(MODEL_DIR)
	@echo "report: $(MODEL_DIR)/report.html (open it in a browser; make serve answers HTTP requests)"

# After the demo: answer HTTP requests with its model (http://127.0.0.1:8000/; Ctrl-C stops).
serve: $(VENV)/.installed
	$(PY) mnist_keras.py --mode serve --data-dir $(DATA) --model-dir $(MODEL_DIR)

test: $(VENV)/.installed
	$(PY) -m pytest

clean:
	rm -rf $(DATA) $(MODEL_DIR)
