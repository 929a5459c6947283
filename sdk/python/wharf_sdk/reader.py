"""`SourceReader`: a seekable, buffered file object over a host `source`.

The host holds uploads, fetched bodies and stored blobs; a plugin reads
them in bounded chunks (`source.read(offset, len)`, at most `max-read`
bytes). `SourceReader` makes such a source (or a window of it, `start` and
`length`) look like a binary file, so `zipfile`, `tarfile`, `json` and
`email` parse host-held bytes while only one chunk at a time is in guest
memory. `store_range` has the host store a range of the window without the
bytes passing through the plugin.
"""

# zipfile decodes member names with cp437 unless they are flagged UTF-8. A
# component only holds the modules imported while componentize-py
# pre-initializes it, and codecs are imported lazily: import it now so
# `zipfile` works over a SourceReader inside the component.
import encodings.cp437  # noqa: F401
import io

from .errors import PluginError

#: Bytes asked for per `source.read` (the host's `max-read` is 1 MiB).
DEFAULT_CHUNK = 256 * 1024


class SourceReader(io.RawIOBase):
    """A read-only, seekable file over `source` bytes [start, start+length)."""

    def __init__(self, source, start=0, length=None, chunk=DEFAULT_CHUNK):
        super().__init__()
        total = source.len()
        if start < 0 or start > total:
            raise ValueError(f"window start {start} is outside a source of {total} bytes")
        if length is None:
            length = total - start
        if length < 0 or start + length > total:
            raise ValueError(f"window [{start}, +{length}) is outside a source of {total} bytes")
        self.source = source
        self.start = start
        self.length = length
        self.chunk = max(1, chunk)
        self._pos = 0
        self._buf = b""
        self._buf_at = 0
        #: Bytes read from the host so far (what passed through the plugin).
        self.bytes_read = 0

    def __len__(self):
        return self.length

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.length + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError("seek before the start of the source")
        self._pos = pos
        return pos

    def _fill(self, pos, want):
        """Read the host from `pos`, at least `want` bytes if there are."""
        n = max(want, self.chunk)
        n = min(n, self.length - pos)
        out = []
        got = 0
        while got < n:
            try:
                part = self.source.read(self.start + pos + got, min(n - got, 1 << 20))
            except PluginError:
                raise
            except Exception as e:  # an Err from the host import
                raise PluginError.from_wit(e) from None
            if not part:
                break
            out.append(part)
            got += len(part)
        self.bytes_read += got
        self._buf = b"".join(out)
        self._buf_at = pos

    def readinto(self, b):
        """Fill `b` as far as the window goes (never a short read before its end:
        parsers such as `zipfile` expect whole reads)."""
        view = memoryview(b).cast("B")
        want = min(len(view), max(0, self.length - self._pos))
        done = 0
        while done < want:
            rel = self._pos - self._buf_at
            if not (0 <= rel < len(self._buf)):
                self._fill(self._pos, want - done)
                rel = 0
                if not self._buf:
                    break  # the source is shorter than it said
            data = self._buf[rel : rel + want - done]
            view[done : done + len(data)] = data
            done += len(data)
            self._pos += len(data)
        return done

    def read_at(self, offset, n):
        """Bytes [offset, offset+n) of the window (fewer at its end)."""
        self.seek(offset)
        return self.read(n)

    def store_range(self, offset, length, expect=None):
        """Have the host store window bytes [offset, offset+length) as a blob;
        with `expect` (`sha256:<hex>`), a different digest stores nothing and
        raises `PluginError` (`digest-mismatch`)."""
        if offset < 0 or length < 0 or offset + length > self.length:
            raise PluginError.invalid(
                f"range [{offset}, +{length}) is outside the {self.length} bytes at hand"
            )
        try:
            return self.source.store_range(self.start + offset, length, expect)
        except PluginError:
            raise
        except Exception as e:
            raise PluginError.from_wit(e) from None

    def window(self, offset, length):
        """A reader over part of this one."""
        if offset < 0 or length < 0 or offset + length > self.length:
            raise PluginError.invalid(
                f"range [{offset}, +{length}) is outside the {self.length} bytes at hand"
            )
        return SourceReader(self.source, self.start + offset, length, self.chunk)


def read_capped(reader, cap, what):
    """All of `reader` (from its start), refused (`too-large`) over `cap` bytes."""
    if len(reader) > cap:
        raise PluginError("too-large", f"{what} is {len(reader)} bytes, more than {cap}")
    reader.seek(0)
    return reader.read(len(reader))
