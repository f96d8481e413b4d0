"""refiner: formally verified least-privilege refinement of AWS IAM policies.

The Python API (refiner.api): refine(policy, finding, catalog=None, strategy="words"),
verify(original, refined, finding, catalog=None), load_catalog(path=None), STRATEGIES, and
the results and errors they use. They are imported on first use, so that `import refiner`
(which the command line does on every call) stays cheap.

refiner.refine and refiner.verify are also the modules of the refine and verify stages: those
two module objects are made callable, calling refiner.api.refine and refiner.api.verify, so
`refiner.refine(...)` is the API function and `import refiner.refine` is still the module."""

import sys
import types

__version__ = "0.2.0"
DISTRIBUTION = "iam-refiner"  # the name on the package index; import and command: refiner

_CALLABLE_MODULES = ("refine", "verify")  # submodules that are also API functions
_API = ("load_catalog", "STRATEGIES", "Result", "Change", "Verification", "ProofError")
__all__ = [*_CALLABLE_MODULES, *_API, "InputError", "__version__"]


class _CallableModule(types.ModuleType):
    """A stage module that, called, is the API function of the same name."""

    def _function(self):
        from . import api

        return getattr(api, self.__name__.rpartition(".")[2])

    def __call__(self, *args, **kwargs):
        return self._function()(*args, **kwargs)

    @property
    def __signature__(self):
        import inspect

        return inspect.signature(self._function())


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # The import system sets each submodule as an attribute of its package once loaded.
        if name in _CALLABLE_MODULES and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _CALLABLE_MODULES or name in _API:
        from . import api

        return globals()[name] if name in _CALLABLE_MODULES else getattr(api, name)
    if name == "InputError":
        from .errors import InputError

        return InputError
    raise AttributeError(f"module 'refiner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
