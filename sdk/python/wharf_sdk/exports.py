"""Glue between plugin logic and the WIT exports.

componentize-py turns an exported function's raised `Err(error)` into the
WIT `result`'s error; any other exception traps the instance, and the host
reports the plugin as crashed. `task` and `route` make that explicit:

    class Plugin(wharf_sdk.exports.Plugin):
        @task
        def sync(self, repo):
            return my_sync(WasmHost(), repo)

- `task`: a `PluginError` becomes the call's error with its code; any other
  exception becomes an error with code `plugin-error` naming the exception
  and where it was raised (the instance survives).
- `route`: for `resolve` (which answers a plan, not a result): an
  exception becomes a 500 failure plan.
- `write_route`: for `write`: the same as a `written` answer.
"""

import functools
import traceback

from . import _wit, plans
from .errors import PluginError

#: The protocol class a plugin's `Plugin` subclasses.
Plugin = _wit.exports.Plugin


def describe_exception(e):
    """`ValueError: ... (at module.py:12 in f)`."""
    frames = traceback.extract_tb(e.__traceback__)
    where = ""
    if frames:
        f = frames[-1]
        where = f" (at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name})"
    return f"{type(e).__name__}: {e}{where}"


def as_error(e):
    if isinstance(e, PluginError):
        return e
    return PluginError("plugin-error", describe_exception(e))


def task(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except _wit.Err:
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes an error
            raise _wit.Err(as_error(e).to_wit()) from None

    return wrapper


def _answering(answer):
    """A decorator for a call that must answer even when it fails: an
    exception becomes `answer(error)`, never a trap."""

    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            try:
                return f(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - every failure becomes an answer
                return answer(as_error(e))

        return wrapper

    return decorate


# `resolve`: a failure is a 500 plan in the plugin's error format.
route = _answering(lambda err: plans.failure(500, err.code, err.message))
# `write`: the same, as the write's answer (no units committed).
write_route = _answering(lambda err: plans.written(plans.failure(500, err.code, err.message)))
