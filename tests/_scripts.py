"""Loading a repository file that is not in a package (a benchmark, a script, a guide's plugin) as a
module (imported as ``_scripts``; tests/ is on sys.path under pytest)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_module(name: str, path: Path) -> ModuleType:
    """Execute ``path`` as the module ``name`` and return it. It is registered in ``sys.modules``
    first, as an import would, so dataclasses and pickling inside it find their module."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
