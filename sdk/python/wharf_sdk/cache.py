"""`DigestCache`: parsed immutable documents by digest, bounded.

A pooled plugin instance serves many requests; parsing a publication index
per request would cost more than the request. Documents are
content-addressed, so an entry never goes stale; the cache is bounded by a
count and by the bytes the documents had, least recently used out first.
"""

from collections import OrderedDict


class DigestCache:
    def __init__(self, max_entries=32, max_bytes=64 << 20):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries = OrderedDict()  # digest -> (value, size)
        self._bytes = 0
        self.loads = 0

    def __len__(self):
        return len(self._entries)

    def get_or_load(self, digest, load):
        """The cached value for `digest`, else `load()` -> (value, size),
        kept unless larger than the whole budget."""
        hit = self._entries.get(digest)
        if hit is not None:
            self._entries.move_to_end(digest)
            return hit[0]
        value, size = load()
        self.loads += 1
        if size <= self.max_bytes:
            self._entries[digest] = (value, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, old) = self._entries.popitem(last=False)
                self._bytes -= old
        return value
