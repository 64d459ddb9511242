"""One listed message as one line of JSON, fast.

``list --json`` writes one object per message: at 100k messages, building a dict of 36 keys and
walking it with the generic encoder was the largest cost of a warm listing (about 14 µs a row).
:func:`message_json` writes the same text straight from the fields, in the same key order, each
value encoded by the C string escaper, and the four ``gitlab_*`` values (few distinct outcomes)
once per outcome. Its output is byte for byte ``ENCODER.encode(m.to_json(now))``
(tests/unit/test_jsonline.py checks it on real rows and on generated ones); anything it does not
expect (a field of another type, an ``extra`` key that replaces a fixed one) goes through the
generic path instead.

Pure ASCII: ``ensure_ascii`` makes every control, bidi or invisible character and every lone
surrogate of a mail text leave as a JSON escape (``\\u001b``, ``\\u202e``, ``\\udcff``), exact
and inert (tests/integration/test_one_way_out.py checks the bytes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii as _esc
from typing import Any

from triage_tui.domain.model import Message

#: The encoder of every JSON line the CLI writes (one instance: json.dumps with options builds
#: a new one per call).
ENCODER = json.JSONEncoder(ensure_ascii=True, default=str)

_FIXED_KEYS = frozenset((*Message.__dataclass_fields__, "from", "age_seconds", "gitlab_outcome", "gitlab_handler",
                         "gitlab_outcome_reason", "gitlab_needs_db")) - {"extra", "outcome"}
_int_repr = int.__repr__
_float_repr = float.__repr__
_NO_OUTCOME = ', "gitlab_outcome": "unknown", "gitlab_handler": null, "gitlab_outcome_reason": "not predicted", ' \
    '"gitlab_needs_db": null'
_outcomes: dict[int, tuple[Any, str]] = {}
_MAX_OUTCOMES = 4096


class _Unexpected(Exception):
    pass


def _s(x: Any) -> str:
    """A str field (None as null)."""
    if x is None:
        return "null"
    if type(x) is not str:
        raise _Unexpected
    return _esc(x)


def _i(x: Any) -> str:
    """An int field (None as null); a bool is not an int here (JSON writes true)."""
    if x is None:
        return "null"
    if type(x) is not int:
        raise _Unexpected
    return _int_repr(x)


def _bad() -> str:
    raise _Unexpected


def _b(x: Any) -> str:
    if x is True:
        return "true"
    if x is False:
        return "false"
    if x is None:
        return "null"
    raise _Unexpected


def _strs(seq: Any) -> str:
    """A tuple or list of str."""
    if type(seq) not in (tuple, list):
        raise _Unexpected
    if not seq:
        return "[]"
    for x in seq:
        if type(x) is not str:
            raise _Unexpected
    return "[" + ", ".join(map(_esc, seq)) + "]"


def _iso(d: Any) -> str:
    if d is None:
        return "null"
    if type(d) is not datetime:
        raise _Unexpected
    return '"' + d.isoformat() + '"'  # digits, signs, 'T', ':' and '.': nothing to escape


def _outcome(o: Any) -> str:
    if o is None:
        return _NO_OUTCOME
    # by identity (outcomes are shared objects; hashing the dataclass costs more than a row's
    # other fields): the entry holds the object, so its id cannot be reused while it is there
    hit = _outcomes.get(id(o))
    if hit is not None and hit[0] is o:
        return hit[1]
    text = (f', "gitlab_outcome": {_s(o.verdict)}, "gitlab_handler": {_s(o.handler)}, '
            f'"gitlab_outcome_reason": {_s(o.reason)}, "gitlab_needs_db": {_b(o.needs_db)}')
    if len(_outcomes) >= _MAX_OUTCOMES:
        _outcomes.clear()
    _outcomes[id(o)] = (o, text)
    return text


_US = timedelta(microseconds=1)


def _age(m: Message, now: datetime) -> str:
    """``round(m.age_seconds(now), 3)`` as JSON writes it, from the age in integer µs (what
    ``total_seconds`` divides by 10**6): about a third of the cost (see :func:`_age_text`)."""
    d = m.internaldate
    if d is None:
        return "null"
    if type(d) is not datetime or type(now) is not datetime:
        raise _Unexpected
    return _age_text((now - d) // _US)  # raises as age_seconds does (a naive and an aware time)


def _age_text(us: int) -> str:
    """``repr(round(us / 10**6, 3))``, which is what ``round(timedelta(microseconds=us)
    .total_seconds(), 3)`` writes. Away from a tie (…500 µs), from -0 and from ages where a
    double cannot hold µs, that is the µs rounded to the nearest ms, divided by 1000: the float
    ``us / 10**6`` is within 0.1 µs of the exact value, so ``round`` rounds it the same way, and
    ``k / 1000`` is the double nearest to k ms, which is what ``round`` returns. There, ``round``
    itself (with the generic check of what it gives)."""
    if -10**15 < us < 10**15 and us % 1000 != 500 and not -500 < us < 0:
        return _float_repr(((us + 500) // 1000) / 1000)
    v = round(us / 1_000_000, 3)
    if v != v or v in (_INF, -_INF):
        raise _Unexpected
    return _float_repr(v)


_INF = float("inf")
#: a listing's few distinct flag sets, as JSON (an equal tuple of str has the same text)
_flag_texts: dict[tuple[str, ...], str] = {}


def _flags(flags: Any) -> str:
    if type(flags) is not tuple:  # a list can change in place: never remembered
        return _strs(flags)
    text = _flag_texts.get(flags)
    if text is None:
        text = _strs(flags)
        if len(_flag_texts) >= _MAX_OUTCOMES:
            _flag_texts.clear()
        _flag_texts[flags] = text
    return text


def message_json(m: Message, now: datetime | None = None) -> str:
    """``ENCODER.encode(m.to_json(now))``, faster (see the module's docstring)."""
    if now is None:
        now = datetime.now(UTC)
    try:
        # _esc raises TypeError on anything but a str; _n writes None as null; _i and _b check types
        text = (
            f'{{"uid": {_i(m.uid)}, "uidvalidity": {_i(m.uidvalidity)}, "flags": {_flags(m.flags)}, '
            f'"internaldate": {_iso(m.internaldate)}, "size": {_i(m.size)}, "from_name": {_esc(m.from_name)}, '
            f'"from_addr": {_esc(m.from_addr)}, "to": {_esc(m.to)}, "cc": {_esc(m.cc)}, "subject": {_esc(m.subject)}, '
            f'"date": {_iso(m.date)}, "message_id": {_esc(m.message_id)}, "kind": {_esc(m.kind)}, '
            f'"key": {"null" if (x := m.key) is None else _esc(x)}, '
            f'"project_id": {_i(m.project_id)}, '
            f'"project_slug": {"null" if (x := m.project_slug) is None else _esc(x)}, '
            f'"project_path": {"null" if (x := m.project_path) is None else _esc(x)}, '
            f'"issue_iid": {_i(m.issue_iid)}, '
            f'"reply_key": {"null" if (x := m.reply_key) is None else _esc(x)}, '
            f'"namespace_id": {_i(m.namespace_id)}, '
            f'"matched_header": {"null" if (x := m.matched_header) is None else _esc(x)}, '
            f'"stale": {"true" if (x := m.stale) is True else "false" if x is False else _bad()}, "bot": {"true" if (x := m.bot) is True else "false" if x is False else _bad()}, '
            f'"bot_reason": {"null" if (x := m.bot_reason) is None else _esc(x)}, '
            f'"suspicious": {"true" if (x := m.suspicious) is True else "false" if x is False else _bad()}, '
            f'"suspicious_reason": {"null" if (x := m.suspicious_reason) is None else _esc(x)}, '
            f'"no_key": {"true" if (x := m.no_key) is True else "false" if x is False else _bad()}, "problems": {_strs(m.problems)}, '
            f'"lock": {"null" if (x := m.lock) is None else _esc(x)}, '
            f'"lock_ttl": {_i(m.lock_ttl)}, "from": {_esc(m.sender)}, "age_seconds": {_age(m, now)}'
            f'{_outcome(m.outcome)}'
        )
        extra = m.extra
        if extra:
            parts = []
            for k, v in extra.items():
                if type(k) is not str or k in _FIXED_KEYS:
                    raise _Unexpected
                parts.append(f", {_esc(k)}: {ENCODER.encode(v)}")
            text += "".join(parts)
    except (_Unexpected, AttributeError, TypeError, ValueError):
        return ENCODER.encode(m.to_json(now))
    return text + "}"
