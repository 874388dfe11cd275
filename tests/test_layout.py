"""The code's shape, as README.md states it: imports follow the layers table (read from README.md), there is no
import cycle, and no module or function outgrows its size unless README.md's list of exceptions says why.

Imports inside functions count; imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("wardsight", "accelerators", "firmware", "fleet", "signing", "provisioning", "wardsight_cli")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Row:
    prefixes: tuple[str, ...]
    allowed: frozenset[int]  # indices of the rows this one may import


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def layers(readme: str) -> list[Row]:
    """The table between ``<!-- layers:start -->`` and ``<!-- layers:end -->``: entry | what | may import, where
    "may import" is "—", "everything", "everything above but `x`, `y`" or a list of entries."""
    block = readme.split("<!-- layers:start -->")[1].split("<!-- layers:end -->")[0]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.strip().splitlines()[2:]]
    entries = [tuple(_names(c[0])) for c in cells]
    index = {name: i for i, names in enumerate(entries) for name in names}
    rows = []
    for i, (names, (_, _, may)) in enumerate(zip(entries, cells, strict=True)):
        if may == "—":
            allowed: set[int] = set()
        elif may == "everything":
            allowed = set(range(len(entries)))
        elif may.startswith("everything above"):
            allowed = set(range(i)) - {index[n] for n in _names(may)}
        else:
            allowed = {index[n] for n in _names(may)}
        rows.append(Row(names, frozenset(allowed | {i})))
    return rows


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines.update(n.lineno for sub in node.body for n in ast.walk(sub) if hasattr(n, "lineno"))
    return lines


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (``from p import m`` names module ``p.m`` when there is one, and ``p``)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: relative import; the project imports absolutely")
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):  # its own package's __init__
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def row_of(module: str, rows: list[Row]) -> int:
    best, length = -1, -1
    for i, row in enumerate(rows):
        for prefix in row.prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = i, len(prefix)
    assert best >= 0, f"{module} is in no row of README's layers table"
    return best


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def size_exceptions(readme: str) -> set[str]:
    """``path`` or ``path:function`` names listed under README's "Size exceptions" heading."""
    section = readme.split("### Size exceptions", 1)
    if len(section) == 1:
        return set()
    body = section[1].split("\n#", 1)[0]
    return set(re.findall(r"^- `([^`]+)`", body, re.M))


def test_the_layers_table_covers_every_module_and_each_import_follows_it():
    rows = layers((ROOT / "README.md").read_text())
    wrong = []
    for module, targets in graph().items():
        mine = row_of(module, rows)
        for target in sorted(targets):
            if row_of(target, rows) not in rows[mine].allowed:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against README's layers table:\n" + "\n".join(wrong)


def test_there_is_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(", ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_modules_and_functions_stay_small_or_readme_says_why():
    readme = (ROOT / "README.md").read_text()
    allowed = size_exceptions(readme)
    big = []
    for path in modules().values():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES and rel not in allowed:
            big.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES and f"{rel}:{node.name}" not in allowed:
                    big.append(f"{rel}:{node.name}: {length} lines")
    assert not big, "over the size limits, and not in README's size exceptions:\n" + "\n".join(sorted(big))
