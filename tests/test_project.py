"""The README's two Quick-start commands and CI agree."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quick_start_is_two_commands() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert "torch==2.13.0" in commands[0]
    assert commands[0].index("torch==2.13.0") < commands[0].index('-e ".[all]"')  # torch first


def test_ci_runs_the_readme_commands() -> None:
    install, test = _quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    install_only = install.rsplit(" && ", 1)[0]  # the first command ends by running the main job
    assert install_only in ci.splitlines()
    assert test in ci.splitlines()


STAGES = {"_version": 0, "errors": 0, "extras": 1, "config": 1, "runtime": 1, "data": 1, "generator": 2, "refsim": 2,
          "models": 3, "validation": 3, "training": 4, "deploy": 5, "campaign": 5, "demo": 6, "cli": 7}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text())
    return [(node.module, [a.name for a in node.names]) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("caloforge")]


def test_lower_stages_never_import_higher_ones_nor_private_names() -> None:
    package = ROOT / "src" / "caloforge"
    problems = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        stage = parts[0]
        for module, names in _imports(path):
            target = module.split(".")[1] if module.count(".") else "__init__"
            if stage in STAGES and target in STAGES and STAGES[target] > STAGES[stage]:
                problems.append(f"{'/'.join(parts)} imports {module} (a later stage)")
            problems += [f"{'/'.join(parts)} imports the private {module}.{n}" for n in names
                         if n.startswith("_") and n != "__version__" and module.split(".")[-1] != parts[-1]]
    assert problems == []


def test_every_module_stays_small() -> None:
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in (ROOT / "src").rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 420} == {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT / "src").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """The caloforge modules a module imports when it runs (at its top or inside functions); imports under
    ``if TYPE_CHECKING:`` only name types and are left out."""
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for other in node.orelse:
                found |= _runtime_imports(ast.Module(body=[other], type_ignores=[]), modules)
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("caloforge"):
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else str(node.module)
                      for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("caloforge")}
        found |= _runtime_imports(node, modules)
    return found & modules


def test_no_import_circle_inside_caloforge() -> None:
    paths = {_module_name(p): p for p in (ROOT / "src" / "caloforge").rglob("*.py")}
    graph = {name: _runtime_imports(ast.parse(path.read_text()), set(paths)) - {name} for name, path in paths.items()}
    circles = []
    for start in sorted(graph):  # a path from start back to itself, found depth first
        stack, seen = [(start, (start,))], set()
        while stack:
            node, route = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    circles.append(" -> ".join((*route, start)))
                elif nxt not in seen and nxt > start:  # each circle reported once, from its smallest module
                    seen.add(nxt)
                    stack.append((nxt, (*route, nxt)))
    assert not circles, circles



def _uncommented_function_imports(text: str) -> list[int]:
    """Lines of imports inside functions with no comment saying why: a run of imports on consecutive lines counts
    as one, commented on one of its lines or on the line before it."""
    comments = {token.start[0] for token in tokenize.generate_tokens(io.StringIO(text).readline)
                if token.type == tokenize.COMMENT}
    bare: set[int] = set()
    for function in ast.walk(ast.parse(text)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            for block in (getattr(node, name, None) for name in ("body", "orelse", "finalbody")):
                run: list[ast.stmt] = []
                for statement in [*(block if isinstance(block, list) else []), None]:
                    if isinstance(statement, ast.Import | ast.ImportFrom) and \
                            (not run or statement.lineno == (run[-1].end_lineno or run[-1].lineno) + 1):
                        run.append(statement)
                        continue
                    lines = set(range(run[0].lineno - 1, (run[-1].end_lineno or run[-1].lineno) + 1)) if run else set()
                    if run and not lines & comments:
                        bare.add(run[0].lineno)
                    run = [statement] if isinstance(statement, ast.Import | ast.ImportFrom) else []
    return sorted(bare)


def test_every_import_inside_a_function_says_why() -> None:
    """An import inside a function hides a dependency: it needs a reason (an optional dependency, start-up time)."""
    bare = [f"{path.relative_to(ROOT)}:{line}" for path in sorted((ROOT / "src" / "caloforge").rglob("*.py"))
            for line in _uncommented_function_imports(path.read_text())]
    assert bare == [], "imports inside functions without a comment saying why (or move them to the top): " + \
        ", ".join(bare)
    sample = "def f():\n    import os\n\n    # optional dependency\n    import yaml\n    import h5py\n" \
             "    if True:\n        import json  # start-up time\n        import re\n\n    import math\n"
    assert _uncommented_function_imports(sample) == [2, 11]  # the check itself: the bare imports found


def test_no_test_imports_a_private_name() -> None:
    """Tests use what the package (and tests/families.py, tests/synthetic.py) publish: a private helper imported by
    a test ties the test to an implementation detail, and one test module's private helper to another's."""
    problems = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                problems += [f"{path.name} imports {node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert not problems, problems


def test_agents_md_indexes_every_test_file() -> None:
    """AGENTS.md says which test file covers which module; a new test file is added there."""
    agents = (ROOT / "AGENTS.md").read_text()
    assert [p.name for p in sorted((ROOT / "tests").glob("test_*.py")) if f"`{p.name}`" not in agents] == []


def test_the_cli_lists_the_registered_families() -> None:
    """``--family``'s metavar is written out (the CLI does not import torch for --help) and must follow the registry."""
    from caloforge.cli.common import FAMILY
    from caloforge.models import FAMILIES

    assert sorted(FAMILY.split("|")) == sorted(FAMILIES)
