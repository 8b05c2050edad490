# Two commands on a fresh machine with python3 and pip: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
# torch is pinned here, not in setup.py: a loose requirement pulls a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: venv demo test bench viewer train clean cohort-demo cohort-bench

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[viewer,test,cohort]'
	touch $@

demo: venv
	$(VENV)/bin/jsnreg demo --out demo-out

test: venv
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q Testing

bench: venv
	$(VENV)/bin/jsnreg bench --out bench-out

cohort-demo: venv
	$(VENV)/bin/jsnreg cohort demo --out cohort-demo

cohort-bench: venv
	$(VENV)/bin/jsnreg cohort bench --out cohort-bench

viewer: venv
	$(VENV)/bin/jsnreg-viewer --demo

train: venv
	$(VENV)/bin/jsnreg train

clean:
	rm -rf $(VENV) demo-out bench-out cohort-demo cohort-bench build *.egg-info
