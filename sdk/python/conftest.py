"""pytest set-up for the SDK's own tests: `wharf_sdk` importable from here."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
