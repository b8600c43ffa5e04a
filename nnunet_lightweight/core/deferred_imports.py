"""Deferred imports for the `lightecho` process: modules that nnU-Net imports at module level but that most
commands never use.

nnU-Net's plans handler imports its whole reader registry (scikit-image's io for its PNG/TIFF reader; nibabel,
whose pydicom imports requests for its test-data downloads), its resampling module imports pandas (for one
`pd.unique` on label maps), and acvl_utils imports blosc2 (which imports httpx for remote arrays). These four
cost about 0.3 s of every command's start-up on a 2-core machine, although predicting NIfTI frames or videos uses
none of them. `defer_imports` puts a stand-in module into `sys.modules` for each; the first attribute read on a
stand-in imports the real module and hands the attribute over, so code that does use them works unchanged, only
later. Only the console command installs the stand-ins (never a library import), so a program that imports this
library gets the real modules.

The stdlib's `importlib.util.LazyLoader` cannot do this: `import pandas as pd` reads the module's `__spec__`,
which makes a lazy module load at once. A stand-in keeps the real spec as a plain attribute and loads only on
attributes it does not have.
"""

import importlib
import importlib.machinery
import importlib.util
import sys
import types

# Imported by nnU-Net modules that every inference command loads; predicting NIfTI frames or videos uses none of
# them. (blosc2, which acvl_utils imports, cannot wait: acvl_utils reads `blosc2.ndarray` in an annotation at
# import time.)
UNUSED_AT_START_UP = ("pandas", "skimage.io", "httpx", "requests")


class DeferredModule(types.ModuleType):
    """Stands in `sys.modules` for a module that is not imported yet; the first read of an attribute it lacks
    imports the real module (which then replaces the stand-in in `sys.modules`) and returns the real attribute."""

    def __init__(self, name: str, spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(name)
        # What tools that walk `sys.modules` read (inspect.getmodule reads every module's `__file__`): served
        # from the spec, so they do not import the real module. `__path__` is left out on purpose: importing a
        # submodule reads it, and that must load the real package first.
        self.__spec__ = spec
        self.__file__ = spec.origin
        self.__loader__ = spec.loader
        self.__package__ = spec.parent
        self._real_module: types.ModuleType | None = None

    def __getattr__(self, attribute: str) -> object:
        return getattr(self.load(), attribute)

    def load(self) -> types.ModuleType:
        """Import the real module and return it. Thread-safe through the import system's own module locks: a
        second thread finds the real module in `sys.modules` (and waits there while it initialises)."""
        if self._real_module is None:
            if sys.modules.get(self.__name__) is self:
                sys.modules.pop(self.__name__, None)
            self._real_module = importlib.import_module(self.__name__)
        return self._real_module


def defer_imports(names: tuple[str, ...] = UNUSED_AT_START_UP) -> list[str]:
    """Install a `DeferredModule` for each named module that is installed and not imported yet; return the
    names deferred. A dotted name's parent package is imported (scikit-image's is lazy and cheap)."""
    deferred = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except ImportError:
            continue
        if spec is None:
            continue
        sys.modules[name] = DeferredModule(name, spec)
        deferred.append(name)
    return deferred
