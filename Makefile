# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# llama.cpp compiled for a generic CPU (AVX2/FMA, no -march=native) and kept outside the
# checkout, so a fresh clone reuses it: a native build crashed with "illegal instruction" on a
# virtual machine whose CPU flags promised more than it ran.
WHEELS ?= $(HOME)/.cache/codegen-ai/wheels
HOST   ?= 127.0.0.1
PORT   ?= 8000
# The project the service works on (created empty when missing); never this checkout by default.
WORKSPACE ?= $(HOME)/codegen-workspace

.PHONY: install migrate run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles from source once (a few minutes) into $(WHEELS).
	ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || CMAKE_ARGS="-DGGML_NATIVE=OFF" \
	  CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip wheel --quiet --no-deps --no-cache-dir -w $(WHEELS) \
	  "$$(grep -o 'llama-cpp-python[^"]*' pyproject.toml)"
	$(PY) -m pip install --quiet "$$(ls $(WHEELS)/llama_cpp_python-*.whl | sort -V | tail -n1)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

# codegen_site.server: daphne with request bodies checked before they are stored. -P: the
# working directory is not put on sys.path (the server leaves it at start anyway).
run: migrate
	CODEGEN_WORKSPACE_ROOT="$(WORKSPACE)" $(PY) -P -m codegen_site.server -b $(HOST) -p $(PORT)

lint: install
	$(VENV)/bin/ruff check codegen_site chat workflow improve rag files_app tests bench
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest

bench: install
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) data .pytest_cache
