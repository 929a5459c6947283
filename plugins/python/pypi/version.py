"""The plugin's version; a build may add a suffix (the build script's second
build, `-next`, to test upgrades) through a generated `wharf_build_info`
module on the build path."""

VERSION = "0.1.0"

try:  # pragma: no cover - only in builds that generate it
    from wharf_build_info import VERSION_SUFFIX
except ImportError:
    VERSION_SUFFIX = ""

FULL_VERSION = VERSION + VERSION_SUFFIX
