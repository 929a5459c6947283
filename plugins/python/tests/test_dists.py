"""Names, file names and archive metadata (wheels, sdists), hostile ones included."""

import io
import tarfile
import zipfile

import pytest

from make_dists import sdist_bytes, sdist_name, wheel_bytes, wheel_name
from pypi import dists, names
from wharf_sdk import PluginError
from wharf_sdk.testing import FakeHost


def read(data, filename):
    return dists.read(FakeHost().reader(data), filename)


def test_normalize_and_names():
    assert names.normalize("Beta.Pkg") == "beta-pkg"
    assert names.normalize("a__b--c..d") == "a-b-c-d"
    assert names.is_project_name("a") and names.is_project_name("A.b_c-1")
    for bad in ["", "-a", "a-", "a/b", "a b", "+x", "."]:
        assert not names.is_project_name(bad), bad


@pytest.mark.parametrize(
    "bad",
    ["../x-1.0.tar.gz", "a/b-1.0.tar.gz", "x-1.0.zip", "x.exe", "", ".x-1.0.tar.gz", "x-1..0.tar.gz",
     "x-1.0.tar.gz\n", "x" * 250 + "-1.0.tar.gz", "x-1.0-py3-none-any.whl/../../etc"],
)
def test_hostile_file_names_are_refused(bad):
    with pytest.raises(PluginError) as e:
        names.check_filename(bad)
    assert e.value.code == "invalid-input"


def test_file_name_parsing():
    assert names.parse_filename("my_pkg-1.0-py3-none-any.whl") == ("my_pkg", "1.0")
    assert names.parse_filename("my_pkg-1.0-1-py3-none-any.whl") == ("my_pkg", "1.0")
    assert names.parse_filename("my-pkg-1.0.tar.gz") == ("my-pkg", "1.0")
    with pytest.raises(PluginError):
        names.parse_filename("nope-py3.whl")
    with pytest.raises(PluginError):
        names.parse_filename("noversion.tar.gz")


def test_wheel_metadata():
    m = read(wheel_bytes("Beta.Pkg", "2.0", requires_python=">=3.8"), wheel_name("Beta.Pkg", "2.0"))
    assert (m.name, m.version, m.requires_python, m.packagetype) == ("Beta.Pkg", "2.0", ">=3.8", "bdist_wheel")
    assert m.project == "beta-pkg"


def test_sdist_metadata():
    m = read(sdist_bytes("alpha", "1.0"), sdist_name("alpha", "1.0"))
    assert (m.name, m.version, m.packagetype) == ("alpha", "1.0", "sdist")


def test_a_wheel_claiming_another_project_is_refused():
    # METADATA says "evil", the file name says "requests".
    with pytest.raises(PluginError) as e:
        read(wheel_bytes("requests", "2.0", metadata_name="evil"), wheel_name("requests", "2.0"))
    assert "says project 'requests' but its METADATA says 'evil'" in e.value.message
    # The .dist-info directory of another project.
    with pytest.raises(PluginError) as e:
        read(wheel_bytes("requests", "2.0", dist_info_name="evil"), wheel_name("requests", "2.0"))
    assert "evil-2.0.dist-info" in e.value.message
    # A renamed file of a legitimate wheel.
    with pytest.raises(PluginError):
        read(wheel_bytes("alpha", "1.0"), wheel_name("requests", "1.0"))
    # Another version than the name says.
    with pytest.raises(PluginError) as e:
        read(wheel_bytes("alpha", "1.0"), wheel_name("alpha", "9.0"))
    assert "version" in e.value.message


def test_an_sdist_claiming_another_project_is_refused():
    with pytest.raises(PluginError) as e:
        read(sdist_bytes("alpha", "1.0", pkg_info_name="evil"), sdist_name("alpha", "1.0"))
    assert "PKG-INFO says 'evil'" in e.value.message


@pytest.mark.parametrize(
    "data",
    [b"", b"not a zip at all", b"PK\x03\x04" + b"\0" * 100, wheel_bytes("alpha", "1.0")[:-30]],
)
def test_malformed_wheels_get_a_clear_error(data):
    with pytest.raises(PluginError) as e:
        read(data, wheel_name("alpha", "1.0"))
    assert e.value.code == "invalid-input"
    assert "is not a valid wheel" in e.value.message


def test_a_wheel_with_a_corrupt_metadata_member():
    data = bytearray(wheel_bytes("alpha", "1.0"))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("alpha-1.0.dist-info/METADATA")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 2] ^= 0xFF
    with pytest.raises(PluginError) as e:
        read(bytes(data), wheel_name("alpha", "1.0"))
    assert "METADATA cannot be read" in e.value.message


def test_a_wheel_without_metadata_or_with_two():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("alpha/__init__.py", b"")
    with pytest.raises(PluginError) as e:
        read(buf.getvalue(), wheel_name("alpha", "1.0"))
    assert "exactly one" in e.value.message
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("alpha-1.0.dist-info/METADATA", b"Name: alpha\nVersion: 1.0\n")
        z.writestr("evil-1.0.dist-info/METADATA", b"Name: evil\nVersion: 1.0\n")
    with pytest.raises(PluginError) as e:
        read(buf.getvalue(), wheel_name("alpha", "1.0"))
    assert "holds 2" in e.value.message


def test_malformed_sdists():
    for data in [b"", b"garbage", sdist_bytes("alpha", "1.0")[:40]]:
        with pytest.raises(PluginError) as e:
            read(data, sdist_name("alpha", "1.0"))
        assert "is not a valid sdist" in e.value.message
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("alpha-1.0/setup.py")
        info.size = 0
        t.addfile(info, io.BytesIO(b""))
    with pytest.raises(PluginError) as e:
        read(buf.getvalue(), sdist_name("alpha", "1.0"))
    assert "no alpha-1.0/PKG-INFO" in e.value.message


def test_an_sdist_walk_is_bounded(monkeypatch):
    monkeypatch.setattr(dists, "MAX_SDIST_SCAN", 10_000)
    data = sdist_bytes("alpha", "1.0", pad=50_000)
    # PKG-INFO comes after the big member in this archive: the walk stops.
    buf = io.BytesIO()
    src = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        members = sorted(src.getmembers(), key=lambda m: m.name.endswith("PKG-INFO"))
        for m in members:
            t.addfile(m, src.extractfile(m))
    with pytest.raises(PluginError) as e:
        read(buf.getvalue(), sdist_name("alpha", "1.0"))
    assert "looked through the first" in e.value.message


def test_only_the_central_directory_and_metadata_are_read():
    data = wheel_bytes("alpha", "1.0", pad=4_000_000)
    host = FakeHost()
    reader = host.reader(data)
    dists.read(reader, wheel_name("alpha", "1.0"))
    assert reader.bytes_read < 600_000, reader.bytes_read


def test_the_warm_up_runs_every_parser():
    from pypi import warmup

    warmup.run()
