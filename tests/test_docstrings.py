"""Every docstring example of the package runs (doctest), and every public name has one.

The examples are collected from every module of ``cld_hf`` with ``doctest.DocTestFinder`` and run
here, with the module's globals plus the toy fixtures of ``helpers.DOCTEST_GLOBALS`` (a recorder
or a trained callback on a toy problem), so that no fixture ships inside the package.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import cld_hf
from helpers import DOCTEST_GLOBALS

MODULES = sorted(m.name for m in pkgutil.walk_packages(cld_hf.__path__, "cld_hf.")
                 if not m.name.split(".")[-1].startswith("__"))
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _doctests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    for name in MODULES:
        module = importlib.import_module(name)
        for test in finder.find(module, name, globs={}):
            if test.examples:
                yield pytest.param(name, test.name, id=test.name)


@pytest.mark.parametrize("module_name, test_name", list(_doctests()))
def test_docstring_examples_run(module_name, test_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    (test,) = [t for t in finder.find(module, module_name) if t.name == test_name]
    test.globs = {**vars(module), **DOCTEST_GLOBALS}
    report = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)


def _public_names():
    for name in ["cld_hf", *MODULES]:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == name:
                yield pytest.param(obj, id=f"{name}.{attr}")


@pytest.mark.parametrize("obj", list(_public_names()))
def test_every_public_function_and_class_has_an_example(obj):
    doc = inspect.getdoc(obj) or ""
    assert ">>>" in doc or "::" in doc, f"{obj.__module__}.{obj.__qualname__} has no example"
