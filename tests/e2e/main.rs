//! End-to-end tests. They drive the real `wharf` binary (`WHARF_BIN`) with
//! real clients. `scripts/test.sh` builds everything, starts the services and
//! sets the environment; see README.md.

mod support;

mod docker;
mod runtime;
