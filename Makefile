# The README's two commands: `make run` and `make test`.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
PORT       ?= 8080
DATA       ?= ./data
PATIENTS   ?= 200
WARD       ?= 30
# make run: auth off by default (loopback only; the server warns); AUTH=on for bearer tokens
# (then: build/bevan token --data $(DATA) --scope "system/*.cruds" prints a token)
AUTH       ?= off

.PHONY: all deps build run test asan fuzz gen gen-check bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBEVAN_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

run: build
	@echo "Bevan: http://127.0.0.1:$(PORT)/fhir  (data in $(DATA); Ctrl-C to stop)"
	@$(BUILD)/bevan serve --listen 127.0.0.1:$(PORT) --data $(DATA) --demo $(PATIENTS) --ward $(WARD) --auth $(AUTH)

test: deps
	@scripts/test.sh

gen:
	python3 tools/gen_fhir_defs.py --package node_modules/hl7.fhir.r4.examples --out src/fhir/gen

gen-check:
	python3 tools/gen_fhir_defs.py --package node_modules/hl7.fhir.r4.examples --out src/fhir/gen --check

bench: build
	@bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz build-o3
