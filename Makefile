# Wharf developer entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo
LISTEN ?= 127.0.0.1:8080
DATA_DIR ?= ./wharf-data

PREFIX ?= /usr/local

.PHONY: run build dist image install manpages test plugins fmt lint

## run: build the plugins (docker, file) into the server, then serve on $(LISTEN)
run: build
	target/dist/wharf serve --listen $(LISTEN) --data-dir $(DATA_DIR)

## build: target/plugins/*.wasm, then target/dist/wharf: the release binary,
## which carries those plugins (host/server/build.rs embeds them), with its
## debug info and symbol table moved aside to target/dist/wharf.debug (found
## through its debug link by gdb, and by Rust's backtraces when it lies beside
## the binary): 58 MB instead of 327. Built with the features `make test`
## uses, so switching between the two rebuilds nothing.
build:
	scripts/build-plugins.sh
	$(CARGO) build --release -p wharf
	$(MAKE) dist

## dist: target/dist/wharf and wharf.debug from target/release/wharf as built
dist:
	mkdir -p target/dist
	objcopy --only-keep-debug target/release/wharf target/dist/wharf.debug
	objcopy --strip-all --add-gnu-debuglink=target/dist/wharf.debug target/release/wharf target/dist/wharf

## image: an OCI image of Wharf, built offline (no base image): target/image/oci
## (an OCI layout) and target/image/wharf.tar (`docker load -i`, `podman load -i`);
## see docs/packaging.md
image: build
	scripts/build-image.sh target/dist/wharf target/image

## install: the stripped binary, plugins inside, to $(PREFIX)/bin (no other file
## needed), and its man pages to $(PREFIX)/share/man/man1
install: build
	install -D -m 0755 target/dist/wharf $(PREFIX)/bin/wharf
	target/dist/wharf manpages $(PREFIX)/share/man/man1

## manpages: a man page per command (`man -l target/man/man1/wharf-repo.1`)
manpages: build
	target/dist/wharf manpages target/man/man1

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
