"""wharf-sdk for Python: write a Wharf content type in Python.

A content type is a WebAssembly component implementing the WIT world
`content-plugin` (`wit/plugin.wit`, package wharf:plugin@0.7.2), built with
componentize-py. This package wraps the host imports the way the Rust
`wharf-sdk` does:

- `host.WasmHost`: the imports as one object (blobs, units, fetch,
  publications, sessions, repositories, log), raising `PluginError`;
- `reader.SourceReader`: a seekable file over a host `source` in bounded
  reads (for `zipfile`, `tarfile`), with `store_range`;
- `paging`: whole unit listings; `cache.DigestCache`: parsed indexes per
  instance; `jsondoc`: settings and versioned documents;
- `plans`: `blob`, `body`, `failure`, `redirect`, `write_plan`, `info`, ...;
- `exports`: `task`/`route` decorators mapping exceptions to WIT errors;
- `testing.FakeHost`: an in-memory host for pytest.

See docs/plugin-guide.md, "Writing a content type in Python".
"""

from .errors import PluginError  # noqa: F401

#: The WIT package version this SDK was built against.
WIT_VERSION = "0.7.2"
__version__ = "0.1.0"
