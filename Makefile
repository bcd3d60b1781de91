# Two commands on a fresh machine (Python 3.11):
#   make demo   the main job end to end on a generated synthetic RadioML-format dataset
#   make test   the test suite
# Both create (or reuse) the virtual environment in .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   := data/synthetic.hdf5
# the demo starts from the dense ladder's 64- and 32-filter rungs (models/README.md), trained on the default
# (calibrated) profile; the demo file is new data for them (another seed)
PROFILE := calibrated
DEMO   := runs/demo
REF64  := models/ladder/f64/model.pt
REF32  := models/ladder/f32/model.pt
export PYTHONPATH := $(CURDIR)

.PHONY: env env-dist demo test test-dist test-shipped bench table3 clean-demo

env: $(STAMP)

# optional: Ray for --executor ray (tests/test_ray.py runs where it is installed)
env-dist: $(STAMP) requirements-dist.txt
	$(PY) -m pip install -q -r requirements-dist.txt

$(STAMP): requirements.txt requirements-finn.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-finn.txt
	touch $(STAMP)

$(DATA): radioml/synthetic.py | $(STAMP)
	$(PY) -m radioml.synthetic --out $(DATA) --frames-per-snr 64 --seed 0 --profile $(PROFILE)

demo: $(STAMP) $(DATA)
	$(PY) -m train.compare --config configs/demo.json --out $(DEMO) --pretrain-epochs 0 --floor-relative 0.95 \
		--strategies imp,fmp --reference-filters 32 --reference-init $(REF32)
	$(PY) -m train.report $(DEMO)/fmp
	$(PY) -m export.to_finn --run $(DEMO)/fmp --out $(DEMO)/export --data $(DATA) --force
	$(PY) -m build --export $(DEMO)/export --out $(DEMO)/build-zcu104 --board ZCU104 --target-fps 50000 --force
	$(PY) -m driver.validate --bundle $(DEMO)/build-zcu104 --data $(DATA) --emulate --out $(DEMO)/validate.json
	$(PY) -m build.compare $(DEMO) --board ZCU104 --target-fps 50000 --check-frames 8
	$(PY) -m compress --start $(REF64) --data $(DATA) --out $(DEMO)/frontier --board ZCU104 \
		--target-fps 240000 --max-steps 3 --probe-frames 128 --threads 2 --alternatives $(REF32)

# the FMP paper's Table 3 on the demo data, reduced (3 widths), plus IMP and the precision search; then FINN estimates
table3: $(STAMP) $(DATA)
	$(PY) -m train.table3 --config configs/demo.json --out runs/table3 --bits 8 6 4 --pretrain-epochs 0 --floor-relative 0.95
	$(PY) -m build.compare runs/table3 --board ZCU104 --target-fps 50000

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

# the tests that start several processes (torchrun ranks, a local Ray cluster): after `make test`
test-dist: env-dist
	$(PY) -m pytest -q -m distributed

# every shipped model in models/ exported with every check and re-scored on its regenerated data
test-shipped: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup -m shipped

bench: $(STAMP)
	$(PY) -m benchmarks.reader_vs_sandbox
	$(PY) -m benchmarks.train_throughput
	$(PY) -m benchmarks.ort_vs_torch
	$(PY) -m benchmarks.packing_vs_finn
	$(PY) -m benchmarks.pruning_hardware
	$(PY) -m benchmarks.hw_frontier
	$(PY) -m benchmarks.distillation_vs_ce

clean-demo:
	rm -rf $(DEMO)
