"""Whole unit listings over `units.list` (at most 10,000 a page)."""

#: Units asked for per `units.list`.
PAGE = 1000


def list_all(host, unit_type, page=PAGE):
    """Every unit of `unit_type` the current repository holds, in key order."""
    out = []
    after = None
    while True:
        batch = host.list_units(unit_type, after, page)
        out.extend(batch)
        if len(batch) < page:
            return out
        after = batch[-1].key


def list_prefixed(host, unit_type, prefix, page=PAGE):
    """The run of keys that start with `prefix` (keys are listed in order,
    so the listing starts just before the prefix and stops after it)."""
    out = []
    after = _before(prefix)
    while True:
        batch = host.list_units(unit_type, after, page)
        for u in batch:
            if not u.key.startswith(prefix):
                if u.key > prefix:
                    return out
                continue
            out.append(u)
        if len(batch) < page:
            return out
        after = batch[-1].key


def _before(prefix):
    """A key that sorts just before every key starting with `prefix`
    (None: from the start)."""
    if not prefix:
        return None
    # Keys are compared bytewise (UTF-8) by the host; the prefix with its
    # last character removed sorts before `prefix` and all its extensions.
    return prefix[:-1] if len(prefix) > 1 else None
