# The README's commands. `make demo` and `make test` set everything up first
# (scripts/setup.sh is idempotent: a second run takes about a second).
VENV ?= .venv
PY := $(VENV)/bin/python
# One thread per process by default: the multi-rank tests start 2 ranks on 2 cores.
OMP_NUM_THREADS ?= 1
TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
PYTEST_ARGS ?= --durations=15
BENCH_ARGS ?=
export OMP_NUM_THREADS TORCH_EXTENSIONS_DIR

.PHONY: setup demo test test-fast bench bench-trainer clean distclean

setup:
	bash scripts/setup.sh

# The demo is one process: let it use every core unless DEMO_THREADS says otherwise
# (nproc itself answers OMP_NUM_THREADS, which is exported as 1 above: ask it without).
demo: setup
	OMP_NUM_THREADS=$${DEMO_THREADS:-$$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)} $(PY) -m tleg_dist.demo

# The cluster tests run on a local 2-node Slurm (two network namespaces on this machine).
# It is stopped afterwards, namespaces and all (TLEG_KEEP_CLUSTER=1 leaves it running), also when
# it fails to start; without root the cluster tests skip, saying why.
CLUSTER_NODES ?= 2
test: setup
	@if [ "$$(id -u)" = 0 ]; then bash slurm/local-cluster.sh start --nodes $(CLUSTER_NODES) || { \
	    [ "$${TLEG_KEEP_CLUSTER:-0}" = 1 ] || bash slurm/local-cluster.sh stop; exit 1; }; \
	else echo "[make test] not root: the local Slurm cluster cannot start, cluster tests will skip"; fi
	@rc=0; $(PY) -m pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ "$$(id -u)" = 0 ] && [ "$${TLEG_KEEP_CLUSTER:-0}" != 1 ]; then bash slurm/local-cluster.sh stop || rc=1; fi; \
	exit $$rc

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not cluster" $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/aux_overhead.py $(BENCH_ARGS)

# The real trainer against a bare loop (1 and 2 CPU ranks, or the GPU); docs/performance.md.
bench-trainer: setup
	$(PY) benchmarks/trainer_throughput.py $(BENCH_ARGS)

# Build and run outputs; keeps .venv (distclean removes it too).
clean:
	rm -rf runs .cache .pytest_cache build
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
