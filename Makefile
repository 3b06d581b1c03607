# KoruDelta — one-command build, run and test. CMake does the work underneath.
#   make          build library (static + shared, pkg-config), kdelta, tests, bench
#   make run      build, print a short how-to, then start the server on the default database (Ctrl-C stops it)
#   make test     every test: C unit tests (ctest), e2e (pytest), crash, fuzz smoke
#   make asan     build with AddressSanitizer + UBSan into build-asan/ and run all tests
#   make tsan     build with ThreadSanitizer into build-tsan/ and run the concurrency tests
#   make bench    benchmarks against SQLite; writes bench/out/core.json and bench/out/query.json;
#                 then the HTTP server against Redis and nginx (wrk): bench/out/http.json;
#                 then vector search against hnswlib: bench/out/vector.json
#   make fuzz     longer libFuzzer runs (clang; KD_FUZZ_SECONDS per target, default 300)

BUILD   ?= build
JOBS    ?= 2
CMAKE_FLAGS ?=
PYTEST  := /usr/bin/python3 -m pytest

.PHONY: all deps build run test unit e2e asan tsan bench fuzz-smoke fuzz clean

all: build

deps:
	@scripts/deps.sh --check 2>/dev/null || scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

PORT ?= 7878

run: build
	@echo "Starting the KoruDelta server on $${KORU_DB:-$$HOME/.korudelta/db} (port $(PORT); Ctrl-C stops it)."
	@echo "From another terminal, try:"
	@echo "  curl -X PUT -H 'Content-Type: application/json' -d '{\"name\": \"Alice\"}' http://127.0.0.1:$(PORT)/api/v1/namespaces/users/keys/alice"
	@echo "  curl http://127.0.0.1:$(PORT)/api/v1/namespaces/users/keys/alice"
	@echo "  curl http://127.0.0.1:$(PORT)/api/v1/namespaces/users/keys/alice/history"
	@echo "  curl -N http://127.0.0.1:$(PORT)/api/v1/watch        # live changes (Server-Sent Events)"
	@echo "  curl http://127.0.0.1:$(PORT)/metrics"
	@echo "While it runs the server holds the database; stop it to use '$(BUILD)/kdelta' on it ($(BUILD)/kdelta --help)."
	@echo
	@exec $(BUILD)/kdelta serve --port $(PORT)

unit: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

e2e: build
	KDELTA_BIN=$(abspath $(BUILD))/kdelta KD_BUILD_DIR=$(abspath $(BUILD)) $(PYTEST) -q tests/e2e

fuzz-smoke: build
	@scripts/fuzz-smoke.sh $(BUILD)

test: unit e2e fuzz-smoke

asan:
	$(MAKE) BUILD=build-asan CMAKE_FLAGS="-DKD_SANITIZE=address,undefined -DCMAKE_C_COMPILER=clang" unit e2e

tsan:
	$(MAKE) BUILD=build-tsan CMAKE_FLAGS="-DKD_SANITIZE=thread -DCMAKE_C_COMPILER=clang" build
	cd build-tsan && ctest --output-on-failure -L concurrency

bench: build
	@mkdir -p bench/out
	$(BUILD)/kd_bench --out bench/out/core.json
	/usr/bin/python3 bench/http/run.py --kdelta $(BUILD)/kdelta --out bench/out/http.json
	/usr/bin/python3 bench/vector/run.py --bin $(BUILD)/kd_bench_vector --out bench/out/vector.json

fuzz: build
	KD_FUZZ_SECONDS=$${KD_FUZZ_SECONDS:-300} KD_FUZZ_BUDGET=$${KD_FUZZ_BUDGET:-1800} scripts/fuzz-smoke.sh $(BUILD)

clean:
	rm -rf build build-asan build-tsan
