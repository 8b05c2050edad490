# Two commands on a fresh machine with python3 and pip: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
# torch is pinned here, not in setup.py: a loose requirement pulls a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: venv demo test bench viewer train clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[viewer,test]'
	touch $@

demo: venv
	$(VENV)/bin/jsnreg demo --out demo-out

test: venv
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q Testing

bench: venv
	$(VENV)/bin/jsnreg bench --out bench-out

viewer: venv
	$(VENV)/bin/jsnreg-viewer --demo

train: venv
	$(VENV)/bin/jsnreg train

clean:
	rm -rf $(VENV) demo-out bench-out build *.egg-info
