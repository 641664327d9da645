"""The layering the style guide promises: analysis/ is pure (it imports nothing from cml), no module outside the
tables compares or looks up a method's, a base learner's or a task's name (cml/methods.py, cml/bases/ and
cml/tasks/ hold them), the names older records use are read in one place (figures/runs.py), and the figures never
import the CLI or sweeps."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cml.bases import BASE_TABLE
from cml.methods import LEGACY, METHOD_TABLE, variant_key
from cml.tasks import FAMILIES, TASK_TABLE

ROOT = Path(__file__).resolve().parents[1]

#: Every name a method or base learner goes by: the tables' names, the older records' names, every cell's
#: variant key (``boil_cml``) and CML†'s old style key.
NAMES = frozenset({*METHOD_TABLE, *LEGACY, *BASE_TABLE, "cml-dagger",
                   *(variant_key(b, m) for b in BASE_TABLE for m in METHOD_TABLE),
                   # and every task and task family (cml/tasks/)
                   *TASK_TABLE, *FAMILIES})
#: Names that are also ordinary words elsewhere (a derivative order ``order == "none"``, matplotlib's
#: ``fmt="none"``, an ``image`` or ``folder`` that is no task): flagged only beside another name
#: (``("none", "cml")``) or compared with something that reads like a method, base or task.
AMBIGUOUS = frozenset({"none", "image", "folder", "fonts"})
#: The words that make an ambiguous name's other side about methods, bases or tasks.
CONTEXT = ("method", "addon", "base", "variant", "cell", "task", "family", "setting")
#: The retired task properties: a branch on a task's kind is a row's behaviour or fact (cml/tasks/).
TASK_PROPERTIES = frozenset({"is_regression", "is_graph"})
#: The tables themselves, where names are the keys: (file, the name the table is assigned to).
TABLES = {("figures/style.py", "METHOD_LOOKS")}
#: Comparisons with a name's word that are not about methods, each with its reason.
ALLOWED = {
    ("cml/cli.py", 'Path(sys.argv[0]).name == "cml"'),  # the program's own name in usage lines, not the method
}
#: The modules whose job is the names: the tables, and the paper's published values (keyed by its cells).
EXEMPT = ("cml/methods.py", "cml/bases/", "cml/tasks/", "cml/paper.py")
#: What reads older records' names, allowed in figures/ only in the loader (figures/runs.py).
LEGACY_READERS = frozenset({"LEGACY", "LEGACY_BASE", "upgrade", "split_variant", "variant_key", "get_method"})


def _names_in(node: ast.AST) -> list[str]:
    """The method or base names a literal holds: a string, or a tuple, list or set of strings."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value in NAMES else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for e in node.elts for n in _names_in(e)]
    if isinstance(node, ast.IfExp):  # STYLES["cml-dagger" if dagger else key]
        return _names_in(node.body) + _names_in(node.orelse)
    return []


def _about_names(names: list[str], other: Callable[[], str]) -> bool:
    """Whether a literal holding ``names``, compared with or looked up in ``other()`` (source text, made only when
    needed), is about methods or bases."""
    if any(n not in AMBIGUOUS for n in names):
        return True
    return bool(names) and any(w in other() for w in CONTEXT)


def offences(source: str, path: str = "<string>") -> list[str]:
    """Every comparison, membership test or lookup of a method, base or task name written as a literal in
    ``source``: ``m == "cml"``, ``m in ("cml", "cl")``, ``run.addon not in ("none", "cml")``,
    ``{"maml", "cml"} - {...}``, ``by_method["cml"]``, ``d.get("cml")``, ``for m in ("cml", "maml")``,
    ``{"cml": ...}``, ``cfg.task == "graph"``; and any use of the retired ``is_regression``/``is_graph``."""
    tree = ast.parse(source)
    lines = source.encode("utf-8").splitlines(keepends=True)  # column offsets count UTF-8 bytes

    def segment(node: ast.AST) -> str:
        # ast.get_source_segment splits the whole source on every call: too slow for every node of a module.
        first, last = node.lineno - 1, node.end_lineno - 1
        if first == last:
            return lines[first][node.col_offset:node.end_col_offset].decode("utf-8")
        return b"".join([lines[first][node.col_offset:], *lines[first + 1:last],
                         lines[last][:node.end_col_offset]]).decode("utf-8")

    table_values = {id(n.value) for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                    if isinstance(t, ast.Name) and (path, t.id) in TABLES}
    found = []

    def flag(node: ast.AST) -> None:
        text = segment(node)
        if (path, text) not in ALLOWED:
            found.append(f"{path}:{node.lineno}: {text}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, operand in enumerate(operands):
                others = lambda i=i, ops=operands: " ".join(segment(o) for j, o in enumerate(ops) if j != i)  # noqa: E731
                if _about_names(_names_in(operand), others):
                    flag(node)
                    break
        elif isinstance(node, ast.Subscript):
            if _about_names(_names_in(node.slice), lambda v=node.value: segment(v)):
                flag(node)
        elif isinstance(node, ast.BinOp):
            if any(isinstance(o, (ast.Set, ast.Tuple, ast.List)) and _about_names(_names_in(o), str)
                   for o in (node.left, node.right)):
                flag(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("get", "pop", "setdefault", "index") and node.args and _about_names(
                    _names_in(node.args[0]), lambda v=node.func.value: segment(v)):
                flag(node)
        elif isinstance(node, (ast.For, ast.comprehension)):
            if isinstance(node.iter, (ast.Tuple, ast.List, ast.Set)) and _about_names(_names_in(node.iter), str):
                flag(node.iter)
        elif isinstance(node, ast.Attribute) and node.attr in TASK_PROPERTIES:
            flag(node)
        elif isinstance(node, ast.Dict) and id(node) not in table_values:
            if _about_names([n for k in node.keys if k is not None for n in _names_in(k)], str):
                flag(node)
    return found


def _sources() -> list[Path]:
    return sorted(p for p in [*(ROOT / "cml").rglob("*.py"), *(ROOT / "figures").glob("*.py")]
                  if not str(p.relative_to(ROOT)).startswith(EXEMPT))


def test_analysis_imports_nothing_from_cml():
    modules = sorted(p.stem for p in (ROOT / "analysis").glob("*.py") if p.stem != "__init__")
    code = (f"import sys, analysis; [__import__('analysis.' + m) for m in {modules!r}]; "
            "print(' '.join(m for m in sys.modules if m == 'cml' or m.startswith('cml.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "", f"analysis imported {out.strip()}"


def test_the_checker_catches_every_way_of_comparing_a_name():
    caught = ['m in ("cml", "cl")', 'm == "cml"', 'cfg.method != "noisy-maml"', 'run.addon not in ("none", "cml")',
              'x = {"maml", "cml"} - {r.method for r in runs}', 'by_method["cml"]', 'values["noisy-maml"]',
              'ci.get("cml", 0)', 'for m in ("cml", "maml"): pass', 'cells = {"none": 1, "cml": 2}',
              'run.method == "none"', 'key == "boil_cml"', 'STYLES["cml-dagger" if dagger else key]', '"maml" in bases',
              'if base != "maml":\n    pass', 'if cfg.task == "graph": pass', 'task in ("sinusoid", "graph")',
              'x = setting.is_regression', 'family == "image"', 'RGB = {"miniimagenet": 84}']
    for line in caught:
        assert offences(line), line
    # Not about methods: other option values that share a word, messages, and calls that build a config.
    fine = ['order == "none"', 'ax.errorbar(x, y, fmt="none")', 'low in ("none", "null")', 'cfg.co_learner == "conv"',
            'raise ValueError(f"no {name} run; train --methods noisy-maml,cml")', 'preset("quick", "fonts", "none")',
            'x = cells_where(by_method, cooperates)', 'kind == "image"', 'path.name == "folder"',
            'cfg.family.classification']
    for line in fine:
        assert not offences(line), line


def test_no_module_compares_a_method_or_base_name():
    found = [o for path in _sources() for o in offences(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "\n".join(found)


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_figures_read_older_names_only_in_the_loader_and_never_import_the_cli_or_sweeps():
    offenders = []
    for path in sorted((ROOT / "figures").glob("*.py")):
        tree = ast.parse(path.read_text())
        for name in sorted(_imported(tree)):
            # Function-local imports too: a figure must not rebuild what the CLI or a sweep would do.
            if name.split(".")[:2] in (["cml", "cli"], ["cml", "sweep"]):
                offenders.append(f"{path.name} imports {name}")
        if path.name != "runs.py":
            used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
                a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
            offenders += [f"{path.name} uses {n}" for n in sorted(used & LEGACY_READERS)]
    assert not offenders, "\n".join(offenders)
