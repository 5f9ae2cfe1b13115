"""Repairs that do not ask the model: single edits of a failing program, tried against the tests.

A very small model often writes a program one edit away from a right one: a recursion
without its base case, `<` where `<=` was meant, `max` for `min`, one wrong guard, a
range one short. Every such edit of the program (an operator, a constant, a call, a
statement removed, a base case added) is tried against the run's own tests in one sandbox
run; the best edited program, when it passes more counted tests than the program it came
from, goes through the normal validation like any other attempt. A second round edits the
edited programs that got closer."""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

from workflow.services.programs import marked

# Replacements per operator: the slips seen in small models' programs (a bound off by
# one, a comparison the wrong way round, an operation its neighbour).
_COMPARE = {ast.Lt: (ast.LtE, ast.Gt), ast.LtE: (ast.Lt, ast.GtE), ast.Gt: (ast.GtE, ast.Lt),
            ast.GtE: (ast.Gt, ast.LtE), ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,), ast.In: (ast.NotIn,),
            ast.NotIn: (ast.In,), ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,)}
_ARITHMETIC = {ast.Add: (ast.Sub, ast.Mult), ast.Sub: (ast.Add,), ast.Mult: (ast.Add, ast.FloorDiv),
               ast.Div: (ast.FloorDiv, ast.Mult), ast.FloorDiv: (ast.Div, ast.Mod), ast.Mod: (ast.FloorDiv,)}
_CALLS = {"max": ("min",), "min": ("max",), "any": ("all",), "all": ("any",), "sum": ("len",), "len": ("sum",),
          "int": ("round", "float"), "round": ("int",), "float": ("int",), "sorted": ("reversed",)}
_SYMBOLS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
            ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
            ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.And: "and", ast.Or: "or"}

MARK = "@@workflow-edits@@"


@dataclass(frozen=True)
class Edit:
    """One edited program and what was changed, for the user to read."""
    code: str
    change: str


@dataclass
class _Site:
    node: ast.AST
    parent: ast.AST | None
    field: str
    index: int | None


def _sites(tree: ast.AST) -> list[_Site]:
    """Every node with where it hangs, in a fixed order (the same for a deep copy)."""
    found = [_Site(tree, None, "", None)]
    position = 0
    while position < len(found):
        node = found[position].node
        position += 1
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                found += [_Site(item, node, field, index) for index, item in enumerate(value)
                          if isinstance(item, ast.AST)]
            elif isinstance(value, ast.AST):
                found.append(_Site(value, node, field, None))
    return found


def _replace(site: _Site, new: ast.AST | None) -> None:
    """Put `new` where the site's node is (None removes a statement from its list)."""
    if site.index is None:
        setattr(site.parent, site.field, new)
    elif new is None:
        del getattr(site.parent, site.field)[site.index]
    else:
        getattr(site.parent, site.field)[site.index] = new


def _line(node: ast.AST) -> str:
    return f"line {node.lineno}: " if hasattr(node, "lineno") else ""


def _shown(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: int) -> ast.expr:
    """A literal as the parser reads it back (`-1` is a minus applied to 1)."""
    return ast.Constant(value) if value >= 0 else ast.UnaryOp(ast.USub(), ast.Constant(-value))


def _calls_itself(function: ast.FunctionDef) -> bool:
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == function.name
               for node in ast.walk(function))


def _choices(site: _Site) -> list[tuple[str, callable]]:
    """(what changes, how) for one node; `how` edits a copy of that node's site."""
    node, choices = site.node, []

    def swap_attr(attr, value, index=None):
        def apply(copied: _Site) -> None:
            if index is None:
                setattr(copied.node, attr, value())
            else:
                getattr(copied.node, attr)[index] = value()
        return apply

    def becomes(build):
        return lambda copied: _replace(copied, build(copied.node))

    if isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            for other in _COMPARE.get(type(op), ()):
                choices.append((f"`{_SYMBOLS[type(op)]}` → `{_SYMBOLS[other]}`", swap_attr("ops", other, index)))
        if isinstance(node.ops[0], (ast.In, ast.NotIn)) and isinstance(node.comparators[0], ast.Constant) \
                and isinstance(node.comparators[0].value, str):
            def fold(copied: _Site) -> None:
                copied.node.left = ast.Call(ast.Attribute(copied.node.left, "lower", ast.Load()), [], [])
            choices.append((f"`{_shown(node.left)}` compared in lower case", fold))
    elif isinstance(node, (ast.BinOp, ast.AugAssign)):
        for other in _ARITHMETIC.get(type(node.op), ()):
            choices.append((f"`{_SYMBOLS[type(node.op)]}` → `{_SYMBOLS[other]}`", swap_attr("op", other)))
        if isinstance(node, ast.BinOp):
            choices.append((f"`{_shown(node)}` → `{_shown(node.left)}`", becomes(lambda n: n.left)))
            choices.append((f"`{_shown(node)}` → `{_shown(node.right)}`", becomes(lambda n: n.right)))
    elif isinstance(node, ast.BoolOp):
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        choices.append((f"`{_SYMBOLS[type(node.op)]}` → `{_SYMBOLS[other]}`", swap_attr("op", other)))
        for index, value in enumerate(node.values):
            rest = [item for position, item in enumerate(node.values) if position != index]
            kept = rest[0] if len(rest) == 1 else ast.BoolOp(node.op, rest)
            choices.append((f"`{_shown(value)}` dropped from the condition",
                            becomes(lambda n, i=index, k=kept: copy.deepcopy(k))))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        choices.append((f"`{_shown(node)}` → `{_shown(node.operand)}`", becomes(lambda n: n.operand)))
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        for step in (1, -1):
            choices.append((f"`{node.value}` → `{node.value + step}`", becomes(lambda n, s=step: _number(n.value + s))))
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        choices.append((f"`{node.value}` → `{not node.value}`", becomes(lambda n: ast.Constant(not n.value))))
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        for other in _CALLS.get(node.func.id, ()):
            def rename(copied: _Site, name=other) -> None:
                copied.node.func = ast.Name(name, ast.Load())
            choices.append((f"`{node.func.id}(...)` → `{other}(...)`", rename))
        if node.func.id == "range" and node.args and not node.keywords:
            stop = 0 if len(node.args) == 1 else 1
            for step, op in ((1, ast.Add), (-1, ast.Sub)):
                def shift(copied: _Site, at=stop, operator=op) -> None:
                    copied.node.args[at] = ast.BinOp(copied.node.args[at], operator(), ast.Constant(1))
                choices.append((f"`{_shown(node)}` ends {'one later' if step > 0 else 'one earlier'}", shift))
    elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp)) and len(node.generators) == 1:
        # `sum(x for x in items if x > 0)` meant as a count, or a transformation not asked for
        target = node.generators[0].target
        loop_names = [ast.Name(target.id, ast.Load())] if isinstance(target, ast.Name) else []
        for element in (ast.Constant(1), *loop_names):
            if ast.dump(element) != ast.dump(node.elt):
                def put(copied: _Site, new=element) -> None:
                    copied.node.elt = copy.deepcopy(new)
                choices.append((f"each item `{_shown(node.elt)}` → `{_shown(element)}`", put))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "list" and node.args \
            and isinstance(node.args[0], ast.Call) and isinstance(node.args[0].func, ast.Name) \
            and node.args[0].func.id == "set":
        def ordered(copied: _Site) -> None:  # a set loses the order; dict keys keep it
            copied.node.args[0].func = ast.Attribute(ast.Name("dict", ast.Load()), "fromkeys", ast.Load())
        choices.append(("`list(set(...))` → `list(dict.fromkeys(...))` (keeps the order)", ordered))
    if isinstance(site.parent, (ast.If, ast.While, ast.IfExp)) and site.field == "test":
        choices.append((f"condition `{_shown(node)}` negated", becomes(lambda n: ast.UnaryOp(ast.Not(), n))))
    if isinstance(node, ast.stmt) and site.index is not None and len(getattr(site.parent, site.field)) > 1 \
            and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import,
                                      ast.ImportFrom)):
        choices.append((f"`{_shown(node).splitlines()[0]}` removed", lambda copied: _replace(copied, None)))
    if isinstance(node, ast.FunctionDef) and node.args.args and _calls_itself(node):
        parameter = node.args.args[0].arg
        for bound in (0, 1):
            for value in ("1", parameter):
                guard = ast.parse(f"if {parameter} <= {bound}:\n    return {value}").body[0]

                def insert(copied: _Site, statement=guard) -> None:
                    body = copied.node.body
                    start = 1 if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                        else 0
                    body.insert(start, copy.deepcopy(statement))
                choices.append((f"base case `if {parameter} <= {bound}: return {value}` added to {node.name}", insert))
    return choices


# An edited expression is written back into the model's own text (its layout and comments
# stay); these need brackets when they land inside a tighter operator.
_LOOSE = (ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.UnaryOp, ast.Lambda, ast.NamedExpr)
_TIGHT = (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Attribute, ast.Subscript, ast.Await, ast.Starred)


def _whole_lines(lines: list[bytes], node: ast.AST) -> bool:
    return not lines[node.lineno - 1][:node.col_offset].strip() and \
        not lines[node.end_lineno - 1][node.end_col_offset:].strip()


def _written_back(code: str, site: _Site, edited: _Site) -> str | None:
    """The edit made in the text of `code`: the changed expression replaced in place, a
    statement's lines removed, a base case's lines inserted (None where that is not simple)."""
    lines = code.encode().split(b"\n")
    node = site.node
    if site.index is not None and len(getattr(edited.parent, edited.field)) < len(getattr(site.parent, site.field)):
        if not _whole_lines(lines, node):
            return None
        return b"\n".join(lines[:node.lineno - 1] + lines[node.end_lineno:]).decode()
    if isinstance(node, ast.FunctionDef) and len(edited.node.body) > len(node.body):
        at = next(index for index, (old, new) in enumerate(zip(node.body + [None], edited.node.body, strict=True))
                  if old is None or ast.dump(old) != ast.dump(new))
        if at >= len(node.body) or not _whole_lines(lines, node.body[at]):
            return None
        before = node.body[at]
        indent = lines[before.lineno - 1][:before.col_offset]
        added = [indent + line.encode() for line in ast.unparse(edited.node.body[at]).split("\n")]
        return b"\n".join(lines[:before.lineno - 1] + added + lines[before.lineno - 1:]).decode()
    if not isinstance(node, ast.expr):
        return None
    new = getattr(edited.parent, edited.field)
    new = new[edited.index] if edited.index is not None else new
    text = ast.unparse(new)
    if isinstance(new, ast.UnaryOp) and not isinstance(new.op, ast.Not):
        loose = isinstance(site.parent, (ast.Attribute, ast.Subscript)) or (
            isinstance(site.parent, ast.BinOp) and isinstance(site.parent.op, ast.Pow))
    else:
        loose = isinstance(new, _LOOSE) and isinstance(site.parent, _TIGHT)
    if loose:
        text = f"({text})"
    first, last = node.lineno - 1, node.end_lineno - 1
    head, tail = lines[first][:node.col_offset], lines[last][node.end_col_offset:]
    return b"\n".join(lines[:first] + [head + text.encode() + tail] + lines[last + 1:]).decode()


def single_edits(code: str, limit: int) -> list[Edit]:
    """Programs one edit away from `code` (at most `limit`, in source order), each parsing and
    written in the code's own layout where that is simple; `[]` when the code does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    edits: list[Edit] = []
    seen = {ast.dump(tree)}
    for position, site in enumerate(_sites(tree)):
        for change, apply in _choices(site):
            copied = copy.deepcopy(tree)
            edited = _sites(copied)[position]
            apply(edited)
            try:
                ast.fix_missing_locations(copied)
                shape = ast.dump(copied)
                text = _written_back(code, site, edited)
                if text is None or ast.dump(ast.parse(text)) != shape:
                    text = ast.unparse(copied) + "\n"
                compile(text, "<edit>", "exec")
            except (SyntaxError, ValueError, TypeError, AttributeError, RecursionError):
                continue
            if shape in seen:
                continue
            seen.add(shape)
            edits.append(Edit(text, _line(site.node) + change))
            if len(edits) >= limit:
                return edits
    return edits


# ---------------------------------------------------------------- trying them in one run

# Wall-clock seconds one edited program may take for all its tests: the programs are small,
# and one that recurses without end or loops must not eat the run's budget.
SECONDS_EACH = 0.25


def plain_tests(suite, names: list[str]) -> list[str]:
    """The tests among `names` that can be called with no arguments (no fixture, no
    parametrize): those a trial runs; the normal validation still runs them all."""
    plain = []
    for name in names:
        case = suite.case(name)
        try:
            node = ast.parse(case.source).body[0] if case else None
        except SyntaxError:
            continue
        if isinstance(node, ast.FunctionDef) and not node.decorator_list and not node.args.args:
            plain.append(name)
    return plain


def trial_program(programs: list[str], tests: str, names: list[str],
                  seconds_each: float | list[float] = SECONDS_EACH, probes: list[str] | tuple = (),
                  cpu_time: bool = False) -> str:
    """A module that runs `tests` against each program in its own namespace and prints one
    line per program: the mark and the positions in `names` of the tests that passed (and,
    with `probes`, the repr of each probe call's value or `error:<exception>`). Each program
    gets a timer (`seconds_each`, one for all or one per program) for its tests and the same
    again for each probe, so one that loops loses only itself (after its first late probe the
    rest are not run); a crash of the whole run keeps the lines already printed. With `cpu_time`
    the timers count the run's CPU seconds rather than the clock's, so a loaded machine does not
    make a sound program late (a program that sleeps is then stopped by the run's own limit)."""
    limits = seconds_each if isinstance(seconds_each, list) else [seconds_each] * len(programs)
    timer, alarm = ("ITIMER_PROF", "SIGPROF") if cpu_time else ("ITIMER_REAL", "SIGALRM")
    return f"""
import io, json, signal, sys

class _Late(BaseException):
    pass

def _late(signum, frame):
    raise _Late()

signal.signal(signal.{alarm}, _late)
_programs = {programs!r}
_tests = {tests!r}
_names = {names!r}
_probes = {list(probes)!r}
_limits = {limits!r}
_out = sys.stdout
for _number, _source in enumerate(_programs):
    _passed = []
    _seen = []
    _space = None
    sys.stdout = io.StringIO()
    try:
        signal.setitimer(signal.{timer}, _limits[_number])
        _space = {{"__name__": "solution"}}
        exec(compile(_source, "solution.py", "exec"), _space)
        exec(compile(_tests, "test_solution.py", "exec"), _space)
        for _index, _name in enumerate(_names):
            try:
                _space[_name]()
                _passed.append(_index)
            except _Late:
                raise
            except BaseException:
                pass
    except BaseException:
        pass
    finally:
        signal.setitimer(signal.{timer}, 0)
    for _call in _probes:
        if _space is None or (_seen and _seen[-1] == "error:Timeout"):
            _seen.append("error:NotRun")
            continue
        try:
            signal.setitimer(signal.{timer}, _limits[_number])
            _seen.append(repr(eval(_call, _space))[:300])
        except _Late:
            _seen.append("error:Timeout")
        except BaseException as _exc:
            _seen.append("error:" + type(_exc).__name__)
        finally:
            signal.setitimer(signal.{timer}, 0)
    sys.stdout = _out
    print({MARK!r} + json.dumps([_number, _passed, _seen] if _probes else [_number, _passed]), flush=True)
"""


def read_trial(output: str, names: list[str], count: int) -> list[set[str] | None]:
    """The names of the passed tests per program (None for a program that printed no line)."""
    return [item[0] if item else None for item in read_probed(output, names, count)]


def read_probed(output: str, names: list[str], count: int) -> list[tuple[set[str], list[str]] | None]:
    """Per program: the names of the passed tests and what each probe gave (an empty list
    without probes); None for a program that printed no line."""
    results: list[tuple[set[str], list[str]] | None] = [None] * count
    for line in marked(output, MARK):
        if not (isinstance(line, list) and len(line) in (2, 3) and isinstance(line[1], list)):
            continue
        number, passed = line[0], line[1]
        seen = line[2] if len(line) == 3 and isinstance(line[2], list) else []
        if isinstance(number, int) and 0 <= number < count:
            results[number] = ({names[index] for index in passed
                                if isinstance(index, int) and 0 <= index < len(names)},
                               [str(item) for item in seen])
    return results
