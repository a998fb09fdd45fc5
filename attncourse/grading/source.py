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


# ---- answers built from the package's reference solutions or blocks --------------------------------------------
_CHECK_API = {"check", "score_summary", "list_exercises", "list_questions", "reset_scores", "NOT_IMPLEMENTED_HINT",
              "NOT_ANSWERED_HINT"}  # what a learner may take from attncourse.exercises


def _top_statements(body: list) -> list:
    """A cell's statements at module level, including those inside if/try/with/for blocks (not in def/class)."""
    out = []
    for node in body:
        out.append(node)
        if isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
            for field in ("body", "orelse", "finalbody"):
                out += _top_statements(getattr(node, field, []) or [])
            for handler in getattr(node, "handlers", []) or []:
                out += _top_statements(handler.body)
    return out


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


class _Bindings:
    """The last module-level binding of each name over the notebook's cells, read in order (the grader evaluates
    the answers at the end of the notebook), and the names that stand for the package."""

    def __init__(self, trees: list[ast.AST]):
        self.last: dict[str, ast.AST] = {}
        self.package: dict[str, str] = {}  # name -> dotted path inside attncourse
        for tree in trees:
            for node in _top_statements(getattr(tree, "body", [])):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        name = a.asname or a.name.split(".")[0]
                        path = a.name if a.asname else a.name.split(".")[0]
                        self._bind(name, node, path if path.split(".")[0] == "attncourse" else None)
                elif isinstance(node, ast.ImportFrom):
                    mod = node.module or ""
                    for a in node.names:
                        path = f"{mod}.{a.name}" if mod.split(".")[0] == "attncourse" and not node.level else None
                        self._bind(a.asname or a.name, node, path)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    self._bind(node.name, node, None)
                elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for t in targets:
                        for n in ast.walk(t):
                            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                                alias = self.resolve(node.value) if isinstance(node, ast.Assign) and t is n else None
                                self._bind(n.id, node, alias)

    def _bind(self, name: str, node: ast.AST, path: str | None) -> None:
        self.last[name] = node
        if path:
            self.package[name] = path
        else:
            self.package.pop(name, None)

    def resolve(self, node: ast.AST | None) -> str | None:
        """``attncourse.x.y`` when ``node`` is a name or attribute chain that stands for a package object."""
        parts = _dotted(node) if node is not None else None
        if not parts or parts[0] not in self.package:
            return None
        return ".".join([self.package[parts[0]], *parts[1:]])


def _is_reference_path(path: str) -> bool:
    parts = path.split(".")
    return len(parts) >= 3 and parts[1] == "exercises" and parts[2] not in _CHECK_API


def _local_names(fn: ast.AST) -> set[str]:
    """Names local to a function or lambda: its parameters and every name it assigns."""
    a = fn.args
    names = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x is not None}
    body = fn.body if isinstance(fn.body, list) else [fn.body]
    for stmt in body:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
                names.add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, ast.alias):
                names.add((n.asname or n.name).split(".")[0])
    return names


def _package_uses(node: ast.AST, b: _Bindings, seen: set[str], depth: int = 0, local: frozenset = frozenset()) -> list[str]:
    """Package objects (dotted paths) the code under ``node`` reaches through the notebook's module-level names
    (a function's parameters and locals shadow them), following the notebook's own functions and classes it uses
    (three levels deep)."""
    found: list[str] = []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        inner = local | _local_names(node)
        for d in [*getattr(node, "decorator_list", []), *node.args.defaults, *node.args.kw_defaults]:
            if d is not None:
                found += _package_uses(d, b, seen, depth, local)
        for stmt in node.body if isinstance(node.body, list) else [node.body]:
            found += _package_uses(stmt, b, seen, depth, inner)
        return found
    if isinstance(node, (ast.Name, ast.Attribute)):
        parts = _dotted(node)
        if parts and parts[0] not in local:
            path = b.resolve(node)
            if path and (path.split(".")[1:2] != ["exercises"] or _is_reference_path(path)):
                return [path]  # package code, or a reference solution (the checking API is not counted)
            if path is None and depth < 3 and parts[0] not in seen and parts[0] in b.last:
                target = b.last[parts[0]]
                if isinstance(target, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign)):
                    seen.add(parts[0])
                    found += _package_uses(target, b, seen, depth + 1)
        if isinstance(node, ast.Attribute) and node.attr == "solution":
            found.append("an exercise's .solution (the reference solution)")
        if isinstance(node, ast.Attribute) and not parts:
            found += _package_uses(node.value, b, seen, depth, local)
        return found
    for child in ast.iter_child_nodes(node):
        found += _package_uses(child, b, seen, depth, local)
    return found


def reference_uses(nb: dict, calls: dict[str, str]) -> dict[str, list[str]]:
    """For each checked key, the package objects its answer is built from: reference solutions
    (``attncourse.exercises.*`` beyond the checking API) or package code (``attncourse.blocks.*`` …) named in the
    answer expression, bound to the answer's name, or used inside the answer's function or class (and the notebook
    functions it calls). Static and by name only: see ``book/grading.md`` for what this cannot see."""
    trees = [t for _, t in ((no, _parse(src)) for no, src in _code_cells(nb)) if t is not None]
    b = _Bindings(trees)
    out: dict[str, list[str]] = {}
    for key, expr in calls.items():
        try:
            node = ast.parse(expr, mode="eval").body
        except (SyntaxError, ValueError, RecursionError):
            continue
        direct = b.resolve(node)
        uses = [direct] if direct else _package_uses(node, b, set())
        uses = list(dict.fromkeys(uses))
        uses = [u for u in uses if not any(v != u and v.startswith(u + ".") for v in uses)]  # the most precise
        if uses:
            out[key] = uses[:4]
    return out


def reaches_reference_solutions(nb: dict) -> list[str]:
    """Cells that reach the package's reference solutions at all (``attncourse.exercises`` beyond ``check`` and
    the scoreboard, ``EXERCISES``, ``.solution``, or such a module named in a string), whatever they answer."""
    reasons = []
    parsed = [(no, _parse(src)) for no, src in _code_cells(nb)]
    b = _Bindings([t for _, t in parsed if t is not None])
    for cell_no, tree in parsed:
        if tree is None:
            continue
        for node in ast.walk(tree):
            path = None
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[:2] == [
                    "attncourse", "exercises"]:
                names = [a.name for a in node.names if a.name not in _CHECK_API and a.name != "*"]
                if node.module != "attncourse.exercises":  # a submodule: core, m00_foundations, …
                    path = f"{node.module} ({', '.join(a.name for a in node.names)})"
                elif names:
                    path = f"{node.module} ({', '.join(names)})"
            elif isinstance(node, ast.Import):
                path = next((a.name for a in node.names if _is_reference_path(a.name)), None)
            elif isinstance(node, ast.Attribute):
                full = b.resolve(node)
                path = full if full and _is_reference_path(full) else None
                if node.attr == "solution":
                    path = path or ".solution"
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "attncourse.exercises." in node.value:
                path = f"the string {node.value[:60]!r}"
            if path:
                reasons.append(f"cell {cell_no} reaches the reference solutions ({path})")
    return list(dict.fromkeys(reasons))
