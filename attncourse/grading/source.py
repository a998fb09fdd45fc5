"""Reading a submission's source without running it: its ``check`` calls and code that tampers.

Plain parsing (``ast``) in the grader; nothing of the notebook is executed here.
"""
from __future__ import annotations

import ast

_GRADER_DEFINES = ("check", "grade", "score_summary")  # names a notebook should not define itself
_SUSPICIOUS_IMPORTS = {"ctypes": "imports ctypes", "gc": "imports gc", "builtins": "imports builtins",
                       "inspect": "imports inspect", "signal": "imports signal", "threading": "imports threading",
                       "multiprocessing": "imports multiprocessing", "subprocess": "imports subprocess"}
_SUSPICIOUS_ATTRS = {"_getframe": "inspects interpreter frames (sys._getframe)", "settrace": "installs a trace hook",
                     "setprofile": "installs a profile hook", "modules": None, "__builtins__": "touches __builtins__",
                     "__code__": "touches function code objects", "f_globals": "reads frame globals",
                     "tb_frame": "reads traceback frames", "__self__": "reaches a builtin's module (__self__)",
                     "__torch_function__": "overrides __torch_function__", "setsid": "starts a new session (setsid)",
                     "fork": "forks", "killpg": "signals process groups", "kill": "signals processes"}


def _code_cells(nb: dict) -> list[tuple[int, str]]:
    """(1-based cell number, source) of the notebook's non-empty code cells."""
    out = []
    for i, cell in enumerate(nb.get("cells", []), start=1):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            src = cell.get("source", "")
            src = "".join(map(str, src)) if isinstance(src, list) else str(src)
            if src.strip():
                out.append((i, src))
    return out


def _to_python(source: str) -> str:
    """Cell source with IPython syntax (``%magic``, ``!cmd``) turned into Python, for ``ast``."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _parse(source: str) -> ast.AST | None:
    try:
        return ast.parse(_to_python(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _check_aliases(trees: list[ast.AST]) -> set[str]:
    """Names that stand for ``check``: imported ``as`` another name or assigned (``c = ac.exercises.check``)."""
    names = {"check"}
    for _ in range(3):  # aliases of aliases
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attncourse"):
                    names.update(a.asname or a.name for a in node.names if a.name == "check")
                elif isinstance(node, ast.Assign) and _is_check_ref(node.value, names):
                    names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _is_check_ref(node: ast.AST | None, names: set[str]) -> bool:
    return (isinstance(node, ast.Name) and node.id in names) or (isinstance(node, ast.Attribute) and node.attr == "check")


def find_check_calls(nb: dict) -> dict[str, str]:
    """``{key: answer expression}`` from the notebook's ``check`` calls (the last one per key wins).

    A call counts however it is written: ``check("00.x", f)``, ``check(key="00.x", learner=f)``,
    ``ac.exercises.check(...)`` or through an alias (``from attncourse.exercises import check as c``,
    ``c = check``). The key must be a string literal; the answer is an expression evaluated in the
    worker at the end of the notebook.
    """
    parsed = [(no, _parse(src)) for no, src in _code_cells(nb)]
    trees = [t for _, t in parsed if t is not None]
    aliases = _check_aliases(trees)
    found: dict[str, str] = {}
    for tree in trees:
        calls = []
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not _is_check_ref(node.func, aliases):
                continue
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            key_node = node.args[0] if node.args else kw.get("key")
            answer = node.args[1] if len(node.args) > 1 else kw.get("learner")
            if isinstance(key_node, ast.Constant) and isinstance(key_node.value, str) and answer is not None:
                try:
                    calls.append((node.lineno, node.col_offset, key_node.value, ast.unparse(answer)))
                except (RecursionError, ValueError):
                    continue
        for _, _, key, expr in sorted(calls):
            found[key] = expr
    return found


def _is_alias_of(value: ast.AST | None, name: str) -> bool:
    """``check = ac.exercises.check`` is an ordinary alias, not a redefinition."""
    return (isinstance(value, ast.Attribute) and value.attr == name) or (isinstance(value, ast.Name) and value.id == name)


def scan_source(nb: dict) -> list[str]:
    """Reasons an instructor should look at this notebook's code (it may try to tamper with grading)."""
    reasons: list[str] = []
    aliases: set[str] = set()  # names bound to attncourse modules or objects
    for cell_no, src in _code_cells(nb):
        tree = _parse(src)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mod = (node.module or "") if isinstance(node, ast.ImportFrom) else ""
                for a in node.names:
                    full = a.name if isinstance(node, ast.Import) else f"{mod}.{a.name}"
                    if full.split(".")[0] == "attncourse" or mod.split(".")[0] == "attncourse":
                        aliases.add((a.asname or a.name).split(".")[0])
                    top = (a.name if isinstance(node, ast.Import) else mod).split(".")[0]
                    if top in _SUSPICIOUS_IMPORTS:
                        reasons.append(f"cell {cell_no} {_SUSPICIOUS_IMPORTS[top]}")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in _GRADER_DEFINES:
                reasons.append(f"cell {cell_no} defines its own {node.name}()")
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                value = getattr(node, "value", None)
                for t in targets:
                    if isinstance(t, ast.Name) and t.id in _GRADER_DEFINES and not _is_alias_of(value, t.id):
                        reasons.append(f"cell {cell_no} rebinds {t.id}")
                    root = t
                    while isinstance(root, (ast.Attribute, ast.Subscript)):
                        root = root.value
                    if t is not root and isinstance(root, ast.Name) and root.id in aliases:
                        reasons.append(f"cell {cell_no} modifies the package: {ast.unparse(t)}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                    "setattr", "delattr", "__import__", "exec"):
                reasons.append(f"cell {cell_no} calls {node.func.id}()")
            elif isinstance(node, ast.Attribute):
                why = _SUSPICIOUS_ATTRS.get(node.attr, "")
                if node.attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys":
                    why = "touches sys.modules"
                if why:
                    reasons.append(f"cell {cell_no} {why}")
            elif isinstance(node, ast.Name) and node.id == "__builtins__":
                reasons.append(f"cell {cell_no} touches __builtins__")
    return list(dict.fromkeys(reasons))  # unique, in order
