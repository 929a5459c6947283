"""pytest set-up: the plugin's modules and the SDK (sdk/python) importable."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "tests"))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "..", "sdk", "python")))
