"""The Python packages content type's logic (host-independent: every function
takes a `host`, the real `WasmHost` or the tests' `FakeHost`)."""
