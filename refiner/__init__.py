"""refiner: formally verified least-privilege refinement of AWS IAM policies.

The Python API (refiner.api): refine(policy, finding, catalog=None, strategy="words"),
verify(original, refined, finding, catalog=None), no_new_access(base, head), load_catalog(path=None),
account_graph(*exports) (who holds what), STRATEGIES, and
the results and errors they use. They are imported on first use, so that `import refiner`
(which the command line does on every call) stays cheap. (The stages they run are the
modules refinement, verification, prove, ...; none of them is named like an API function.)"""

__version__ = "0.2.0"
DISTRIBUTION = "iam-refiner"  # the name on the package index; import and command: refiner

_API = ("refine", "verify", "no_new_access", "load_catalog", "account_graph", "STRATEGIES", "Result",
        "Change", "Verification", "GateResult", "ProofError", "KeepRules", "read_keep_rules")
__all__ = [*_API, "InputError", "__version__"]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    if name == "InputError":
        from .errors import InputError

        return InputError
    raise AttributeError(f"module 'refiner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
