"""The triage service is split over services/{triage,plan_types,listing,undo,execute}.py; every name
the code base imports from ``triage_tui.services.triage`` still comes from there, and is the very
object its new home defines (so ``isinstance`` and ``except`` keep working across the two paths)."""

from __future__ import annotations

import ast
from pathlib import Path

import triage_tui.services.triage as triage
from triage_tui.services import execute, listing, plan_types, undo
from triage_tui.services.journal import JournalWriteFailed

ROOT = Path(__file__).resolve().parents[2]


def _imported_from_triage() -> set[str]:
    names: set[str] = set()
    for top in ("triage_tui", "tests", "bench"):
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == "triage_tui.services.triage":
                    names.update(a.name for a in node.names)
    return names


def test_every_name_imported_from_services_triage_is_there() -> None:
    wanted = _imported_from_triage()
    assert {"TriageService", "Plan", "OpResult", "RetryPolicy", "left_alone_lines", "_merged"} <= wanted
    assert sorted(n for n in wanted if not hasattr(triage, n)) == []


def test_re_exports_are_the_same_objects() -> None:
    assert all(hasattr(triage, n) for n in triage.__all__)
    for home in (plan_types, undo, listing):
        for name in set(triage.__all__) & set(vars(home)):
            assert getattr(triage, name) is getattr(home, name), name
    assert triage._merged is undo._merged
    assert issubclass(triage.OperationStopped, JournalWriteFailed)  # the CLI's except still catches it


def test_the_service_keeps_every_method_on_one_class() -> None:
    svc = triage.TriageService
    for mixin in (listing.Listing, undo.UndoPlanning, execute.Execution):
        assert issubclass(svc, mixin)
        for name, value in vars(mixin).items():
            if callable(value) or isinstance(value, staticmethod):
                assert getattr(svc, name) is getattr(mixin, name), name
    for name in ("connect", "counts", "search", "iter_list", "iter_messages", "list", "peek", "plan_flags",
                 "plan_expunge", "plan_undo", "execute", "cancel", "select_view", "search_uids", "internaldates",
                 "_resumable_fetch", "_changed_and_recent", "_retrying", "_backoff", "_open_writer"):
        assert callable(getattr(svc, name)), name


def test_only_services_execute_calls_the_mutating_imap_primitives() -> None:
    """The one writer: read-only mode, UIDVALIDITY and the journal are enforced there."""
    writers = set()
    for path in (ROOT / "triage_tui").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("_store", "_uid_expunge", "_expunge", "_expunge_all")):
                writers.add(path.relative_to(ROOT).as_posix())
    assert writers == {"triage_tui/services/execute.py"}
