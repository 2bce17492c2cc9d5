# Two commands do everything on a fresh clone:
#   make demo   - the whole flow on this machine (emulated kubelet, API server and sysfs)
#   make test   - every test (.ci/run calls this)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test demo bench lint stubs clean kube test-cluster demo-cluster

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# helm (for the chart's tests) is built once before the tests, outside pytest's per-test timeout;
# make test needs no Go otherwise: without it the chart's tests skip (and fail in CI)
test: venv
	@if command -v go >/dev/null; then ./scripts/build-helm.sh >/dev/null; \
	else echo "make test: Go not installed: the Helm chart's tests will skip"; fi
	./scripts/ensure-services.sh
	@# two workers (the machine's 2 cores), each test file on one worker (the ordered whole-flow
	@# steps share a module fixture); a short base temp dir keeps unix socket paths < 108 bytes
	bt=$$(mktemp -d /tmp/pt-XXXXXX); $(PY) -m pytest -q -n 2 --dist loadfile --basetemp=$$bt; \
	rc=$$?; rm -rf $$bt; exit $$rc

# The real local Kubernetes (v1.34.1 + etcd + fake CRI), built from Go modules into
# ~/.cache/stx-intel-gpu/kube (outside the clone; a second run takes seconds).
kube:
	./scripts/build-kube.sh

# The whole flow and its tests on that cluster (nothing emulated but sysfs/devfs and the runtime).
test-cluster: venv kube
	./scripts/ensure-services.sh
	STX_TEST_CLUSTER=1 $(PY) -m pytest -q --timeout=900 tests/cluster

demo-cluster: venv kube
	./scripts/ensure-services.sh
	$(PY) -m demo --cluster

demo: venv
	./scripts/ensure-services.sh
	$(PY) -m demo

bench: venv
	./scripts/ensure-services.sh
	$(PY) -m benchmarks

lint: venv
	$(VENV)/bin/ruff check gpu_plugin sysinv_ext tests benchmarks scripts demo stx_app localcluster
	$(VENV)/bin/mypy gpu_plugin sysinv_ext localcluster
	$(VENV)/bin/mypy stx_app/k8sapp_intel_gpu_plugin

stubs: venv
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

.PHONY: helm app

# helm from its Go module (tools/helm), built once into ~/.cache/stx-intel-gpu/helm/<version>-<hash>/.
helm:
	./scripts/build-helm.sh

# The StarlingX application tarball: build/app/intel-gpu-plugin-<version>.tgz.
app: venv
	$(PY) scripts/build_app.py
