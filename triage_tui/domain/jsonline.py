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
from datetime import UTC, datetime
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
_outcomes: dict[Any, str] = {}
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
    text = _outcomes.get(o)
    if text is None:
        text = (f', "gitlab_outcome": {_s(o.verdict)}, "gitlab_handler": {_s(o.handler)}, '
                f'"gitlab_outcome_reason": {_s(o.reason)}, "gitlab_needs_db": {_b(o.needs_db)}')
        if len(_outcomes) >= _MAX_OUTCOMES:
            _outcomes.clear()
        _outcomes[o] = text
    return text


def _age(m: Message, now: datetime | None) -> str:
    age = m.age_seconds(now)
    if age is None:
        return "null"
    v = round(age, 3)
    if v != v or v in (float("inf"), float("-inf")):
        raise _Unexpected
    return _float_repr(v)


def message_json(m: Message, now: datetime | None = None) -> str:
    """``ENCODER.encode(m.to_json(now))``, faster (see the module's docstring)."""
    if now is None:
        now = datetime.now(UTC)
    try:
        text = (
            f'{{"uid": {_i(m.uid)}, "uidvalidity": {_i(m.uidvalidity)}, "flags": {_strs(m.flags)}, '
            f'"internaldate": {_iso(m.internaldate)}, "size": {_i(m.size)}, "from_name": {_s(m.from_name)}, '
            f'"from_addr": {_s(m.from_addr)}, "to": {_s(m.to)}, "cc": {_s(m.cc)}, "subject": {_s(m.subject)}, '
            f'"date": {_iso(m.date)}, "message_id": {_s(m.message_id)}, "kind": {_s(m.kind)}, "key": {_s(m.key)}, '
            f'"project_id": {_i(m.project_id)}, "project_slug": {_s(m.project_slug)}, '
            f'"project_path": {_s(m.project_path)}, "issue_iid": {_i(m.issue_iid)}, "reply_key": {_s(m.reply_key)}, '
            f'"namespace_id": {_i(m.namespace_id)}, "matched_header": {_s(m.matched_header)}, '
            f'"stale": {_b(m.stale)}, "bot": {_b(m.bot)}, "bot_reason": {_s(m.bot_reason)}, '
            f'"suspicious": {_b(m.suspicious)}, "suspicious_reason": {_s(m.suspicious_reason)}, '
            f'"no_key": {_b(m.no_key)}, "problems": {_strs(m.problems)}, "lock": {_s(m.lock)}, '
            f'"lock_ttl": {_i(m.lock_ttl)}, "from": {_s(m.sender)}, "age_seconds": {_age(m, now)}'
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
