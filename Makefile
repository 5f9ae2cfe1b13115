# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime
DEV     := $(VENV)/.dev
# llama.cpp compiled for a generic CPU (AVX2/FMA, no -march=native) and kept outside the
# checkout, so a fresh clone reuses it: a native build crashed with "illegal instruction" on a
# virtual machine whose CPU flags promised more than it ran.
WHEELS ?= $(HOME)/.cache/codegen-ai/wheels
HOST   ?= 127.0.0.1
PORT   ?= 8000
# The project the service works on (created empty when missing); never this checkout by default.
WORKSPACE ?= $(HOME)/codegen-workspace

.PHONY: install install-dev migrate run test lint bench clean

# Runtime and development dependencies are installed apart: `make run` installs the runtime ones
# (and the `scaled` extra), `make test` adds the `dev` extra. The project itself is not installed:
# a one-line .pth puts this checkout on the venv's sys.path (after site-packages, as an editable
# install did, but without its import hook, which cost every interpreter start more than the
# interpreter itself), except in isolated interpreters (-I: the sandbox), which need none of it.
REQUIRES = $(PY) -c 'import sys, tomllib; project = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
  lists = [project["dependencies"] if name == "runtime" else project["optional-dependencies"][name] for name in sys.argv[1:]]; \
  print("\n".join(line for group in lists for line in group if not line.startswith(project["name"])))'
SITE     = $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

$(RUNTIME): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles from source once (a few minutes) into $(WHEELS).
	ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || CMAKE_ARGS="-DGGML_NATIVE=OFF" \
	  CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip wheel --quiet --no-deps --no-cache-dir -w $(WHEELS) \
	  "$$(grep -o 'llama-cpp-python[^"]*' pyproject.toml)"
	$(PY) -m pip install --quiet "$$(ls $(WHEELS)/llama_cpp_python-*.whl | sort -V | tail -n1)"
	$(REQUIRES) runtime scaled > $(VENV)/requirements-runtime.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements-runtime.txt
	printf 'import sys; sys.flags.isolated or sys.path.append(%s)\n' "'$(CURDIR)'" > "$(SITE)/codegen-checkout.pth"
	# An editable install of the project (from an earlier Makefile) goes; the .pth replaces it.
	$(PY) -m pip uninstall --quiet --yes codegen-ai 2>/dev/null || true
	touch $@

$(DEV): $(RUNTIME)
	$(REQUIRES) dev > $(VENV)/requirements-dev.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements-dev.txt
	touch $@

install: $(RUNTIME)

install-dev: $(DEV)

migrate: install
	$(PY) manage.py migrate --noinput

# codegen_site.server: daphne with request bodies checked before they are stored. -P: the
# working directory is not put on sys.path (the server leaves it at start anyway).
run: migrate
	CODEGEN_WORKSPACE_ROOT="$(WORKSPACE)" $(PY) -P -m codegen_site.server -b $(HOST) -p $(PORT)

lint: install-dev
	$(VENV)/bin/ruff check codegen_site chat workflow improve rag files_app tests bench
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest

bench: install-dev
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) data .pytest_cache
