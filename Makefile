# Two commands on a fresh machine with python3 and pip: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
# torch is pinned here, not in setup.py: a loose requirement pulls a multi-GB CUDA build.
TORCH := torch==2.13.0
# The core as 3D Slicer 5.6-5.8 run it: Python 3.9 and pydicom 2.4. Python 3.9 from PATH or pyenv
# when the machine has one, else python3 (then only pydicom 2.4 is checked).
SLICER_VENV := .venv-pydicom24
SLICER_PYTHON := $(firstword $(wildcard $(PYENV_ROOT)/versions/3.9*/bin/python3.9 $(HOME)/.pyenv/versions/3.9*/bin/python3.9 \
                  /usr/bin/python3.9 /usr/local/bin/python3.9) python3)
SLICER_PY := $(SLICER_VENV)/bin/python

.PHONY: venv slicer-venv demo test test-slicer-python bench viewer train clean cohort-demo cohort-bench

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[viewer,test,cohort]'
	touch $@

slicer-venv: $(SLICER_VENV)/.installed

# What the module installs into Slicer (Resources/requirements.txt) beside the pydicom Slicer 5.6-5.8
# bundle; no torch and no editable install: the tests find the core through PYTHONPATH.
$(SLICER_VENV)/.installed: Resources/requirements.txt
	$(SLICER_PYTHON) -m venv $(SLICER_VENV)
	$(SLICER_PY) -m pip install --quiet -r Resources/requirements.txt 'pydicom==2.4.*' pytest
	touch $@

demo: venv
	$(VENV)/bin/jsnreg demo --out demo-out

test: venv slicer-venv
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q Testing
	$(MAKE) --no-print-directory test-slicer-python

# The tests marked slicer_python (image and DICOM I/O, the Lib, the torch-free core, detection) in Slicer's versions.
test-slicer-python: slicer-venv
	JSNREG_EXPECT_SLICER_PYTHON=1 PYTHONPATH=JSNRegistration $(SLICER_PY) -m pytest -q -m slicer_python Testing/test_images.py Testing/test_slicer_lib.py Testing/test_slicer_python.py

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
	rm -rf $(VENV) $(SLICER_VENV) demo-out bench-out cohort-demo cohort-bench build *.egg-info
