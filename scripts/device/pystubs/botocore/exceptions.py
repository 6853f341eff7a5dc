import sys, os
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _stub import module_getattr as __getattr__  # noqa: E402
__version__ = "0-stub"
