"""One way out, structurally: no module of triage_tui writes to the terminal, prompts, or copies
to the clipboard except the exits listed here, which make text inert (or, for the clipboard,
validate it). A new ``print(`` or ``sys.stderr.write`` elsewhere fails this test: send the text
through ``ctx.say`` / ``ctx.note`` (CLI) or a widget / ``App.notify`` (TUI) instead."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "triage_tui"

#: (module, function) -> the direct writes it may make, and why that is safe.
ALLOWED: dict[tuple[str, str], set[str]] = {
    # the CLI's exits: every line passes through inert() there
    ("context.py", "Context.emit_json"): {".out.write"},  # ensure_ascii JSON: escapes, never raw
    ("context.py", "Context.emit_json_lines"): {".out.write"},  # the same, checked ASCII, a batch at a time
    ("context.py", "Context.say"): {".out.write"},
    ("context.py", "Context.note"): {"sys.stderr.write"},
    ("context.py", "_ask"): {".out.write"},  # Context.confirm's question, made inert there first
    ("cli.py", "_error_line"): {"sys.stderr.write"},
    ("cli.py", "_print_traceback"): {"sys.stderr.write"},
    # a progress counter on a TTY: "\r<action>: done/total", the label made inert
    ("commands/_flow.py", "_progress_printer.show"): {"sys.stderr.write"},
    # constant text only (the filter language help; the demo's own ports, paths and counts)
    ("commands/list_.py", "_FilterHelp.__call__"): {"print"},
    ("commands/demo.py", "_print_env"): {".out.write"},
    # the clipboard: the app's gate (printable ASCII only) and the preview's validated copy
    ("tui/app.py", "TriageApp.copy_to_clipboard"): {"copy_to_clipboard"},  # also Textual's selection copy
    ("tui/screens/preview.py", "PreviewScreen._copy"): {"copy_to_clipboard"},
}

_TRACEBACK_PRINTERS = {"print_exc", "print_exception", "print_tb", "print_stack", "print_last"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _what(call: ast.Call) -> str | None:
    """The kind of terminal/clipboard write a call is, or None."""
    name = _dotted(call.func)
    if name in ("print", "input", "breakpoint"):
        return name
    if name in ("sys.stdout.write", "sys.stderr.write", "sys.stdout.writelines", "sys.stderr.writelines",
                "sys.__stdout__.write", "sys.__stderr__.write"):
        return name.replace("writelines", "write").replace("__stdout__", "stdout").replace("__stderr__", "stderr")
    if name.startswith("traceback.") and name.split(".")[-1] in _TRACEBACK_PRINTERS:
        return "traceback.print"
    if name.endswith("copy_to_clipboard"):
        return "copy_to_clipboard"
    if name.endswith(".out.write") or name == "out.write":  # Context.out: bypassing ctx.say
        return ".out.write"
    if name == "os.write" and call.args and isinstance(call.args[0], ast.Constant) and call.args[0].value in (1, 2):
        return "os.write"
    return None


def _markup_widget(call: ast.Call) -> str | None:
    """``Static("text")`` / ``Label(...)`` with a plain string and markup left on would parse it."""
    name = _dotted(call.func).split(".")[-1]
    if name not in ("Static", "Label"):
        return None
    markup_off = any(k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False
                     for k in call.keywords)
    first = call.args[0] if call.args else None
    is_content = isinstance(first, ast.Call) and _dotted(first.func).split(".")[-1] in ("Content", "_content")
    return None if markup_off or is_content or first is None else f"{name}(...) without markup=False"


def _scan() -> tuple[list[str], set[tuple[str, str, str]]]:
    bad: list[str] = []
    used: set[tuple[str, str, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

        def visit(node: ast.AST, scope: tuple[str, ...], rel: str = rel) -> None:
            for child in ast.iter_child_nodes(node):
                inner = scope
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner = (*scope, child.name)
                if isinstance(child, ast.Call):
                    qual = ".".join(scope)
                    what = _what(child)
                    if what is not None:
                        if what in ALLOWED.get((rel, qual), set()):
                            used.add((rel, qual, what))
                        else:
                            bad.append(f"{rel}:{child.lineno} {qual or '<module>'}: {what}")
                    widget = _markup_widget(child)
                    if widget is not None:
                        bad.append(f"{rel}:{child.lineno} {qual or '<module>'}: {widget}")
                visit(child, inner)

        visit(tree, ())
    return bad, used


def test_no_module_writes_to_the_terminal_or_the_clipboard_but_the_exits() -> None:
    bad, _ = _scan()
    assert not bad, ("direct terminal/clipboard writes outside the one way out (use ctx.say / ctx.note, "
                     "a widget or App.notify; see tests/unit/test_exits.py):\n" + "\n".join(bad))


def test_the_list_of_exits_is_current() -> None:
    """Every allowed exit still exists: a stale entry would let a new write slip in unnoticed."""
    _, used = _scan()
    stale = [f"{m} {q}: {w}" for (m, q), ws in ALLOWED.items() for w in ws if (m, q, w) not in used]
    assert not stale, stale


def test_the_scan_catches_a_bypass(tmp_path: Path) -> None:
    src = ("import sys\nfrom textual.widgets import Static\n"
           "def f(ctx, app, s):\n    print(s)\n    sys.stderr.write(s)\n    ctx.out.write(s)\n"
           "    app.copy_to_clipboard(s)\n    Static(s)\n")
    calls = [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call)]
    found = {w for c in calls for w in (_what(c), _markup_widget(c)) if w}
    assert found == {"print", "sys.stderr.write", ".out.write", "copy_to_clipboard",
                     "Static(...) without markup=False"}
