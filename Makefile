# Wharf developer entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo
LISTEN ?= 127.0.0.1:8080
DATA_DIR ?= ./wharf-data

.PHONY: run test plugins fmt lint

## run: build the plugins (docker, file), then serve on $(LISTEN) with target/plugins
run:
	scripts/build-plugins.sh
	$(CARGO) run --release -p wharf -- serve --listen $(LISTEN) --data-dir $(DATA_DIR) --plugin-dir target/plugins

## test: the whole suite (installs peers, starts dockerd, builds images, cargo test)
test:
	scripts/test.sh

## plugins: build target/plugins/*.wasm and target/test-plugins/*.wasm
plugins:
	scripts/build-plugins.sh --test-plugins

## fmt: format all Rust code
fmt:
	$(CARGO) fmt --all

## lint: formatting check and clippy with warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
