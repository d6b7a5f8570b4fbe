# Two commands on a fresh machine:  `make run`  (install + start the app)  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test test-fast bench venv chromium orthanc dicomtools clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT)

# Installs Debian's chromium for the browser tier when missing and possible (root + apt).
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser tier will be skipped"; }

# Installs Debian's Orthanc and its DICOMweb plugin for the PACS tier when missing and possible.
orthanc:
	@{ { command -v Orthanc || test -x /usr/sbin/Orthanc; } >/dev/null 2>&1 && \
	  test -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so; } || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null) \
	  || echo "orthanc not installed: the PACS tier will be skipped"; }

# Installs Debian's dcmtk (JPEG DICOM encoders for the decode tests) and dicom3tools (dciodvfy, the
# DICOM validator the results tests run) when missing and possible; those cases skip otherwise.
dicomtools:
	@{ command -v dcmcjpeg && command -v dciodvfy; } >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk dicom3tools >/dev/null) \
	  || echo "dcmtk / dicom3tools not installed: their DICOM cases will be skipped"; }

test: venv chromium orthanc dicomtools
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not realdata and not browser and not pacs"

bench: venv
	$(BIN)/python bench/preprocess.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/explain.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/lungs.py

clean:
	rm -rf $(VENV) .pytest_cache
