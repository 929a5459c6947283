"""`PluginError`: the error a plugin's logic raises, with a stable code.

Host imports that fail raise it too (`WasmHost` turns the WIT `Err(error)`
into one), and the export glue (`wharf_sdk.exports`) turns it back into the
WIT `error` record the host reports (a task's `error.cause` is the code).
"""


class PluginError(Exception):
    """An error with a stable machine `code` and a human `message`."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_wit(self):
        from ._wit import types

        return types.Error(code=self.code, message=self.message)

    @classmethod
    def from_wit(cls, err):
        """From a WIT `error` record (or whatever an `Err` carried)."""
        value = getattr(err, "value", err)
        if hasattr(value, "code") and hasattr(value, "message"):
            return cls(value.code, value.message)
        return cls("host", str(value))

    # The codes the host and the plugin guide name.
    @classmethod
    def invalid(cls, message):
        """The input was malformed or hostile (`invalid-input`)."""
        return cls("invalid-input", message)

    @classmethod
    def not_found(cls, message):
        return cls("not-found", message)

    @classmethod
    def conflict(cls, message):
        return cls("conflict", message)

    @classmethod
    def unsupported(cls, message):
        return cls("unsupported", message)

    @classmethod
    def invalid_reference(cls, message):
        """`select`/`edit` named a reference the content type has no words for."""
        return cls("invalid", message)

    @classmethod
    def no_remote_content(cls, what):
        """The answer of `pull` and `locate` for a type without remote content."""
        return cls.unsupported(f"this content type does not fetch {what} from a feed on demand")
