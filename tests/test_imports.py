"""tleg_dist's folders (and top-level modules) import downwards only, in the order LAYERS gives.

Every import counts, those inside functions too: an import deferred to call time is still a
dependency, and two units that need each other cannot be read, tested or moved apart. A unit is
a folder of tleg_dist/ or one of its top-level modules; inside a unit, modules import freely.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tleg_dist"

# Bottom first: a unit may import only the units listed before it.
LAYERS = [
    "utils",         # atomic writes, JSON/YAML reading, UserError: imports nothing of ours
    "cli",           # how every command ends (exit codes, one-line errors): any entry point may use it
    "models",        # pure model code: no I/O, no distribution
    "losses",
    "artifacts",     # each artefact's contract and its one writer: run folders, checkpoints, learngene
                     # files, model folders and their cards
    "config",        # the typed recipe: its architecture fields come from models, a learngene's file from artifacts
    "teacher",
    "data",
    "training",
    "train",         # python -m tleg_dist.train
    "convert",
    "plans",         # runs of many jobs, one way: the demo and the sweep are plans
    "experiments",   # the experiment: a plan with tuning, pre-registered statistics and cost
    "demo",          # python -m tleg_dist.demo
    "__init__",      # the package's public API (tleg_dist.load_learngene)
]


def unit_of(module: str) -> str:
    """'tleg_dist.plans.run' -> 'plans'; 'tleg_dist.cli' -> 'cli'; 'tleg_dist' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every tleg_dist module `path` imports; `from P import name` is P.name when
    that is a module of ours, else P. A relative import is reported as '.' (tleg_dist spells them out)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "."))
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, _module(f"{node.module}.{a.name}") or node.module) for a in node.names]
    return [(line, m) for line, m in found if m == "." or m == "tleg_dist" or m.startswith("tleg_dist.")]


def _module(name: str) -> str | None:
    """`name` if it is a module or package of ours."""
    path = PACKAGE.parent / name.replace(".", "/")
    return name if path.with_suffix(".py").exists() or (path / "__init__.py").exists() else None


def edges() -> list[tuple[str, int, str, str]]:
    """(file, line, importing unit, imported unit) of every import between two units."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = unit_of(module_name(path))
        for line, module in imported(path):
            assert module != ".", f"{path}:{line}: a relative import; spell out tleg_dist.… so that this check sees it"
            if unit_of(module) != here:
                out.append((str(path.relative_to(PACKAGE.parent)), line, here, unit_of(module)))
    return out


def test_every_unit_has_its_place_in_the_layering():
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert not units - set(LAYERS), f"add {sorted(units - set(LAYERS))} to LAYERS, where it belongs"
    assert not set(LAYERS) - units, f"LAYERS names {sorted(set(LAYERS) - units)}, which tleg_dist no longer has"


def test_units_import_only_units_below_them():
    rank = {u: i for i, u in enumerate(LAYERS)}
    upward = [f"{file}:{line}: {here} imports {there}, which LAYERS puts above it"
              for file, line, here, there in edges() if rank.get(there, -1) > rank.get(here, -1)]
    assert not upward, "\n".join(upward)


def test_the_check_sees_deferred_and_from_imports(tmp_path):
    """An import inside a function, and `from tleg_dist.plans import run`, are both found."""
    sample = PACKAGE / "cli.py"  # imports tleg_dist.utils.errors at the top
    assert (sample.name, "utils") in {(Path(f).name, there) for f, _, _, there in edges()}
    code = tmp_path / "probe.py"
    code.write_text("def f():\n    from tleg_dist.plans import run\n    import tleg_dist.data\n")
    assert [m for _, m in imported(code)] == ["tleg_dist.plans.run", "tleg_dist.data"]
