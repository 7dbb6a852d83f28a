"""The public surface: ``__all__``, the subpackages after ``import jaxnn``, no use of others' private names."""

import ast
import pathlib
import subprocess
import sys

import pytest

import jaxnn

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Underscored only so that they cannot clash with field names: the public API of every NamedTuple.
NAMEDTUPLE_METHODS = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}


def test_every_public_name_exists():
    for name in jaxnn.__all__:
        assert hasattr(jaxnn, name), name
    for name in ["Network", "Layer", "LeakyReLU", "ReLU", "Sigmoid", "Tanh", "Identity", "Softmax",
                 "MSELoss", "CrossEntropyLoss", "make_train_step", "fit"]:
        assert name in jaxnn.__all__


def test_research_tools_are_public():
    for name in ["check_gradients", "GradientReport", "GradientCheckError", "loss_with_backprop", "hvp",
                 "hessian", "per_example_grads", "per_example_grad_norms", "clipped_mean_grad"]:
        assert name in jaxnn.__all__ and hasattr(jaxnn, name), name
    for name in ["GradientRow", "Comparison", "ComponentCheck", "Tolerances", "check_gradients"]:
        assert name in jaxnn.checking.__all__ and hasattr(jaxnn.checking, name), name


@pytest.mark.slow
def test_subpackages_come_with_import_jaxnn():
    # A fresh interpreter: in this one some other test may have imported them already.
    code = "import jaxnn; print(jaxnn.datasets.read_idx, jaxnn.checking.check_gradients, jaxnn.training.fit)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT)
    for module in (jaxnn.datasets, jaxnn.checking, jaxnn.training):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _owner(dotted):
    """The module or package a dotted name is private to (None if public): ``a.b._c.d`` -> ``a.b``."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            return ".".join(parts[:i])
    return None


def private_uses(source, module, is_package=False):
    """``(line, what)`` for each use in ``source`` (the code of ``module``) of another module's private name.

    A private name (one leading underscore) may be used only inside the module
    or package it belongs to: ``jaxnn._types`` anywhere in jaxnn,
    ``jaxnn.training._step`` inside jaxnn.training, a module's ``_helper`` in
    that module. Attributes ``x._name`` are allowed on ``self`` and ``cls`` only.
    """
    package = module if is_package else module.rpartition(".")[0]
    inside = lambda owner: owner is None or module == owner or module.startswith(owner + ".")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if not inside(_owner(a.name))]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: "." is this package, ".." its parent
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names
                      if not inside(_owner(f"{base}.{a.name}"))]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in NAMEDTUPLE_METHODS:
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append((node.lineno, f"{ast.unparse(node.value)}.{node.attr}"))
    return sorted(found)


# White-box tests that reach into the one module they test, and why.
WHITE_BOX = {
    "tests/test_faults.py": "jaxnn.checkpoint: the temporary's lock during the write, the closed output's sink",
    "tests/training/test_epoch.py": "jaxnn.training._epoch: the clock and the memory of short epochs",
    "tests/training/test_plan.py": "jaxnn.training._plan: the value checks counted, to see what is not scanned twice",
    "tests/training/test_step.py": "jaxnn.training._step: auto_batch_split replaced by a recorder",
}


def test_no_module_uses_another_modules_private_names():
    found = []
    for path in sorted(p for folder in ("jaxnn", "tests", "examples") for p in (ROOT / folder).rglob("*.py")):
        if path.relative_to(ROOT).as_posix() in WHITE_BOX:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        found += [f"{path.relative_to(ROOT)}:{line}: {what}"
                  for line, what in private_uses(path.read_text(), module, is_package)]
    assert not found, "private names of other modules:\n" + "\n".join(found)


def test_the_private_name_check_finds_what_it_should():
    source = (
        "import jax._src.core\n"
        "from jaxnn._types import Params\n"           # a private module of its own package: allowed
        "from jaxnn.network import _helper\n"
        "from ._validation import check\n"            # relative: jaxnn._validation, allowed
        "from .training._step import train_step\n"    # jaxnn.training's own: not for jaxnn.fake
        "x = jaxnn.network._helper(self._a, t._replace(a=1), o.__class__)\n"
    )
    assert private_uses(source, "jaxnn.fake") == [
        (1, "jax._src.core"), (3, "jaxnn.network._helper"), (5, "jaxnn.training._step.train_step"),
        (6, "jaxnn.network._helper"),
    ]
    # Inside jaxnn.training the same private module is its own.
    assert private_uses("from ._step import train_step\n", "jaxnn.training", is_package=True) == []
    assert private_uses("from jaxnn._types import Params\n", "tests.test_x") == [(1, "jaxnn._types.Params")]


def _package_imports():
    """``{module: [(line, imported jaxnn module, inside a function)]}`` for every module of jaxnn."""
    modules = {}
    for path in sorted((ROOT / "jaxnn").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    found = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f)}
        rows = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            rows += [(node.lineno, name, id(node) in in_function) for name in names if name in modules]
        found[module] = rows
    return found


def test_no_import_cycle_and_no_jaxnn_import_inside_a_function():
    """The layout's promise: modules import each other in one direction, at the top, where a reader looks."""
    imports = _package_imports()
    hidden = [f"{m}:{line} imports {name}" for m, rows in imports.items() for line, name, inner in rows if inner]
    assert not hidden, "imports of jaxnn modules inside functions:\n" + "\n".join(hidden)
    edges = {m: {name for _, name, _ in rows if name != m and not m.startswith(name + ".")}
             for m, rows in imports.items()}
    cycles, done = [], set()

    def visit(module, path):
        if module in path:
            cycles.append(" -> ".join(path[path.index(module):] + [module]))
            return
        if module in done:
            return
        for target in sorted(edges[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_are_a_leaf_and_the_recursion_lives_in_one_module():
    imports = _package_imports()
    assert not imports["jaxnn._checks"], imports["jaxnn._checks"]
    loops = [p.relative_to(ROOT).as_posix() for p in (ROOT / "jaxnn").rglob("*.py")
             if "reversed(range(" in p.read_text()]
    assert loops == ["jaxnn/backprop.py"], loops


def test_fit_reads_on_one_screen():
    """``fit`` is a plan and a run: its body (docstring aside) stays short."""
    tree = ast.parse((ROOT / "jaxnn" / "training" / "_fit.py").read_text())
    fit = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "fit")
    body = fit.body[1:]  # after the docstring
    assert body[-1].end_lineno - body[0].lineno + 1 <= 40
