"""The package's layering, read from its own imports: no import cycle at module level, `layers/` imports
nothing above it (not even inside a function), `models/` reaches the loader, the trainer, the CLI and the
pipelines only lazily, and only the package face stays directly in `triformers/`."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "triformers"
# the package face, and two modules every layer may stand on: config (ModelConfig) and memory (what a config
# asks of the machine, and the dtype / device names), which import nothing of triformers but config and errors
TOP_LEVEL = {"__init__", "__main__", "errors", "config", "auto", "memory"}
BASE_IMPORTS = {"memory": ("triformers.config", "triformers.errors")}
# what layers/ may import from triformers: itself and the two modules below it
LAYERS_MAY_IMPORT = ("triformers.layers", "triformers.config", "triformers.errors")
MODELS_NEVER_AT_MODULE_LEVEL = ("triformers.io", "triformers.training", "triformers.cli", "triformers.pipelines")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported triformers module, at module level?) for each import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks are not imports at run time
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            top_level -= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import x` imports the submodule x
            names = [f"{base}.{a.name}" if not node.module else base for a in node.names]
        else:
            continue
        found += [(name, id(node) in top_level) for name in names if name.startswith("triformers")]
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module a dotted import lands in (`triformers.io.files.read_json` -> `triformers.io.files`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_no_import_cycle_at_module_level():
    modules = all_modules()
    graph = {name: {resolve(target, modules) for target, top in imports(path) if top} - {None, name}
             for name, path in modules.items()}
    # a package __init__ importing its own submodules is how a package is built, not a cycle through it
    for name in graph:
        graph[name] = {t for t in graph[name] if not (modules[name].name == "__init__.py" and t.startswith(name + "."))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle at module level: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_layers_import_nothing_above_them():
    bad = [(name, target) for name, path in all_modules().items() if name.startswith("triformers.layers")
           for target, _ in imports(path) if not target.startswith(LAYERS_MAY_IMPORT)]
    assert not bad, f"layers/ reaches up: {bad}"


def test_models_reach_loader_trainer_cli_pipelines_only_lazily():
    bad = [(name, target) for name, path in all_modules().items() if name.startswith("triformers.models")
           for target, top in imports(path) if top and target.startswith(MODELS_NEVER_AT_MODULE_LEVEL)]
    assert not bad, f"models/ imports at module level: {bad}"


def test_only_the_package_face_stays_at_the_top():
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in TOP_LEVEL)
    assert not loose, f"modules directly in triformers/ besides the package face: {loose}"
    for stem, allowed in BASE_IMPORTS.items():
        above = [name for name, _ in imports(PACKAGE / f"{stem}.py") if not name.startswith(allowed)]
        assert not above, f"triformers/{stem}.py imports {above}: it must stand on config and errors alone"


def test_the_checker_sees_a_cycle(tmp_path, monkeypatch):
    """The cycle check can fail: two modules importing each other are reported."""
    package = tmp_path / "triformers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("from .a import x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    try:
        test_no_import_cycle_at_module_level()
    except AssertionError as err:
        assert "triformers.a -> triformers.b -> triformers.a" in str(err)
    else:
        raise AssertionError("the cycle a <-> b was not found")
