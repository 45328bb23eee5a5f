"""Every module of the package imports (a rename that misses one import shows here, not in a late stage test)."""

import importlib
import pkgutil

import rlhfkit


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(rlhfkit.__path__, "rlhfkit.") if not m.name.endswith("__main__")]
    assert len(names) > 50
    for name in names:
        importlib.import_module(name)
