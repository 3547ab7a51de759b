"""Each module's public surface is exactly its __all__: nothing hidden, nothing stray."""

import importlib
import inspect

import pytest

MODULES = [
    "approvals.alert",
    "approvals.canonical",
    "approvals.errors",
    "approvals.lifecycle",
    "approvals.policy",
    "approvals.screening",
    "approvals.templates",
    "approvals.workflow",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_exactly_the_public_classes_and_functions(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(module.__all__)
    missing = [item for item in exported if not hasattr(module, item)]
    assert missing == []
    defined = {
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == name
    }
    assert defined - exported == set(), f"public but not in __all__ of {name}"
