"""The package's shape: light imports, the layers' dependencies, module sizes, no magic."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cld_hf"
NUMPY_CORE = ["_validation", "scoring/__init__", "scoring/common", "scoring/batch",
              "scoring/streaming", "scoring/kernels", "scoring/_numba_rows", "attribution", "selection", "splits", "strategies/__init__",
              "strategies/noise", "strategies/coverage", "diagnosis", "columns",
              "baselines/__init__", "baselines/common", "baselines/dynamics", "baselines/geometry",
              "baselines/gradients"]
HEAVY = ("torch", "transformers", "datasets", "accelerate")


def _imports(path: Path) -> set[str]:
    """Top-level names imported anywhere in a module (absolute, or relative to cld_hf)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level:
                parts = path.relative_to(PACKAGE).parent.parts[: len(path.relative_to(PACKAGE).parent.parts) - (node.level - 1)]
                names.add("cld_hf." + ".".join([*parts, *(node.module or "").split(".")]).strip("."))
    return names


def test_the_numpy_api_imports_no_torch_transformers_datasets_or_accelerate():
    # numba too: only the compiled kernel imports it, when it runs
    code = ("import sys\n"
            "from cld_hf import cld_scores, StreamingCLD, class_budgets, select_top_per_class\n"
            f"print([m for m in {HEAVY + ('numba',)!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", NUMPY_CORE)
def test_the_numpy_core_modules_import_no_torch_or_hugging_face(module):
    names = _imports(PACKAGE / f"{module}.py")
    assert not names & set(HEAVY), names & set(HEAVY)


def test_the_library_never_imports_its_application():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("app",) or rel == Path("cli/__init__.py"):
            continue  # the app itself, and the CLI's table naming the app's subcommands
        if any(n.startswith("cld_hf.app") or n == "app" for n in _imports(path)):
            offenders.append(str(rel))
    assert offenders == []


def test_cld_hf_help_and_subcommand_help_import_no_torch():
    for argv in (["--help"], ["score", "--help"], ["select", "--help"], ["inspect", "--help"],
                 ["push", "--help"], ["attribute", "--help"], ["study", "--help"]):
        code = ("import sys\nfrom cld_hf.cli import main\n"
                "try:\n    main(%r)\nexcept SystemExit:\n    pass\n"
                "print('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules])"
                % (argv,))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip().splitlines()[-1] == "HEAVY []", argv


def test_no_module_is_over_600_lines_and_none_walks_stack_frames():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert len(text.splitlines()) <= 600, path
        for magic in ("currentframe", "f_back", "sys._getframe", "inspect.stack"):
            assert magic not in text, (path, magic)
