"""Realistic header blocks, deterministic: what the list's FETCH brings back from a real incoming
mailbox (RFC 2047 words in many scripts and charsets, folded lines, raw 8-bit, malformed fields,
multipart, every GitLab key kind, bots, bounces, lists). Used by the build golden test and by
``bench/bench_build.py``.

``header_block(rng, now)`` returns the bytes of ``BODY.PEEK[HEADER.FIELDS (...)]`` for one
message (fields the list asks for, CRLF, ending with the empty line)."""

from __future__ import annotations

import base64
import quopri
import random
from datetime import UTC, datetime, timedelta

HOST = "incoming.gitlab.example.com"
TEMPLATE = f"incoming+%{{key}}@{HOST}"

_SCRIPTS: tuple[tuple[str, str], ...] = (
    ("utf-8", "Ошибка при получении данных от сервера"),
    ("koi8-r", "Ошибка сборки в ветке main"),
    ("windows-1251", "Запрос на доступ к проекту"),
    ("iso-2022-jp", "ビルドが失敗しました：パイプライン"),
    ("shift_jis", "会議の議事録について"),
    ("euc-kr", "배포 실패 알림입니다"),
    ("gb2312", "关于项目的问题报告"),
    ("big5", "請協助檢查這個問題"),
    ("utf-8", "שגיאה בעת טעינת הנתונים"),
    ("utf-8", "خطأ في جلب البيانات من الخادم"),
    ("iso-8859-7", "Σφάλμα κατά τη λήψη δεδομένων"),
    ("iso-8859-1", "Réunion à propos du déploiement"),
    ("iso-8859-2", "Żółta łódź – błąd wdrożenia"),
    ("windows-1252", "Über die Änderung – “Fehler”"),
    ("utf-8", "Lỗi khi tải dữ liệu từ máy chủ"),
    ("utf-8", "ข้อผิดพลาดในการดึงข้อมูล"),
    ("utf-8", "Fehler beim Abrufen 🚨 der Daten"),
    ("utf-8", "Error al obtener los datos — ñandú"),
)
_ASCII_SUBJECTS = (
    "Error fetching data from FOO", "Re: Pipeline failed for main", "Question about the API",
    "[JIRA] (PROJ-1234) Deploy blocked", "Re: Re: Fwd: meeting notes", "Verify your email address",
    "Welcome to Acme Cloud", "Your build has failed", "Out of office", "Undelivered Mail Returned to Sender",
    "Can you help me with the login issue?", "weekly report", "Password reset requested",
)
_NAMES = (
    ("Alice Example", "alice@example.org"), ("Bob Müller", "bob@example.de"), ("佐藤 花子", "hanako@example.jp"),
    ("Иван Петров", "ivan@example.ru"), ("GitHub", "noreply@github.com"), ("Jenkins CI", "jenkins@ci.example.com"),
    ("Mail Delivery System", "MAILER-DAEMON@mx.example.net"), ("", "postmaster@example.net"),
    ("Dependabot", "dependabot[bot]@users.noreply.github.com"), ("O'Brien, Pat", "pat@example.ie"),
    ("Zoë Ångström", "zoe@example.se"), ("محمد علي", "mohammed@example.sa"), ("김민수", "minsu@example.kr"),
    ("alerts", "alertmanager@monitoring.example.com"), ("Support Team", "support@vendor.example"),
)
_KEYS = (
    "gitlab-org-gitlab-278964-3mgkkkb1qh8t4lfu4a4nyh5zc-issue",
    "mygroup-proj-42-glimt-abc123def456-merge-request",
    "grp-proj-7-issue-", "grp-sub-proj-1234-5xk9q2-issue-88",
    "b7f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5", "b7f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5-unsubscribe",
    "group/project", "group/project+abc123", "group/project+merge-request+tok",
    "1zbq8u5x9m4k2j7h6g3f1d0s9a8p7o6i5u4y", "not-a-key", "",
)


def _encode(text: str, charset: str, rng: random.Random) -> str:
    try:
        data = text.encode(charset)
    except (UnicodeEncodeError, LookupError):
        charset, data = "utf-8", text.encode()
    if rng.random() < 0.6:
        # split into words of at most ~45 bytes, as mailers do
        out, step = [], 45 if charset != "iso-2022-jp" else len(data)
        for i in range(0, len(data), step):
            out.append(f"=?{charset}?B?{base64.b64encode(data[i:i + step]).decode()}?=")
        return "\r\n ".join(out)
    q = quopri.encodestring(data, header=True).decode("ascii").replace("=\n", "")
    return f"=?{charset}?{rng.choice('Qq')}?{q}?="


def _subject(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.45:
        cs, text = rng.choice(_SCRIPTS)
        return _encode(text, cs, rng)
    if r < 0.55:
        cs, text = rng.choice(_SCRIPTS)
        return "Re: " + _encode(text, cs, rng) + " [#" + str(rng.randint(1, 99999)) + "]"
    if r < 0.6:
        return rng.choice(_SCRIPTS)[1]  # raw 8-bit (RFC 6532)
    if r < 0.62:
        return "=?utf-8?B?broken!?= " + rng.choice(_ASCII_SUBJECTS)  # malformed word
    s = rng.choice(_ASCII_SUBJECTS)
    if rng.random() < 0.2:
        s = s + " " + "x" * rng.randint(40, 120)  # folded long subject
        s = s[:70] + "\r\n " + s[70:]
    return s


def _from(rng: random.Random) -> str:
    name, addr = rng.choice(_NAMES)
    r = rng.random()
    if not name or r < 0.1:
        return addr
    if name.isascii():
        return f'"{name}" <{addr}>' if ("," in name or "'" in name or r < 0.3) else f"{name} <{addr}>"
    if r < 0.85:
        return f"{_encode(name, 'utf-8', rng)} <{addr}>"
    if r < 0.9:
        return f"{name} <{addr}>"  # raw UTF-8 display name
    if r < 0.95:
        return f"{addr} ({name})"
    return f"noreply@github.com <{addr}>"  # an impersonating display name


def _date(t: datetime, rng: random.Random) -> str:
    r = rng.random()
    off = rng.choice((0, 60, -300, 120, 330, -420, 540))
    local = t + timedelta(minutes=off)
    sign = "+" if off >= 0 else "-"
    zone = f"{sign}{abs(off) // 60:02d}{abs(off) % 60:02d}"
    base = local.strftime("%a, %d %b %Y %H:%M:%S ") + zone
    if r < 0.8:
        return base
    if r < 0.85:
        return base + " (UTC)"
    if r < 0.9:
        return local.strftime("%d %b %Y %H:%M:%S GMT")
    if r < 0.93:
        return local.strftime("%a, %d %b %Y %H:%M:%S +2400")  # absurd
    if r < 0.96:
        return local.strftime("%A, %B %d, %Y %I:%M %p")  # not RFC 5322
    return local.strftime("%a, %e %b %y %H:%M:%S ") + zone


def _received(t: datetime, rng: random.Random, to: str, i: int) -> str:
    by = rng.choice(("mx1.example.com", "mail.gitlab.example.com", "smtp.relay.example.net"))
    fr = rng.choice(("mail-ej1-f54.google.com", "outbound.example.org", "[203.0.113.7]", "unknown"))
    with_ = rng.choice(("ESMTPS", "ESMTP", "LMTP", "SMTP", "ESMTPSA"))
    tls = " (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256)" if with_.endswith(("S", "SA")) else ""
    when = (t - timedelta(seconds=30 * i)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    return (f"from {fr} ({fr} [198.51.100.{i + 3}])\r\n\tby {by} (Postfix) with {with_} id "
            f"{rng.getrandbits(40):X}{tls}\r\n\tfor <{to}>; {when}")


def header_block(rng: random.Random, now: datetime) -> tuple[bytes, datetime, int]:
    """(header bytes, INTERNALDATE, RFC822.SIZE) of one realistic message."""
    t = now - timedelta(seconds=rng.randint(60, 30 * 86400))
    key = rng.choice(_KEYS)
    to = TEMPLATE.replace("%{key}", key) if key else "someone@elsewhere.example"
    fields: list[tuple[str, str]] = []
    hops = rng.randint(1, 5)
    for i in range(hops):
        fields.append(("Received", _received(t, rng, to, i)))
    if rng.random() < 0.5:
        fields.append(("Return-Path", "<>" if rng.random() < 0.05 else f"<bounce-{rng.getrandbits(32)}@example.org>"))
    if rng.random() < 0.7:
        fields.append(("Delivered-To", to))
    fields.append(("From", _from(rng)))
    r = rng.random()
    if r < 0.7:
        fields.append(("To", to))
    elif r < 0.85:
        fields.append(("To", f"{_encode('Поддержка', 'utf-8', rng)} <{to}>, other@example.org"))
    else:
        fields.append(("To", "Undisclosed recipients:;"))
        fields.append(("X-Original-To", to))
    if rng.random() < 0.25:
        fields.append(("Cc", ", ".join(f"{n} <{a}>" if n.isascii() and n else a
                                       for n, a in rng.sample(_NAMES, rng.randint(1, 4)))))
    fields.append(("Subject", _subject(rng)))
    fields.append(("Date", _date(t, rng)))
    mid = f"<{rng.getrandbits(64):x}.{rng.getrandbits(20)}@mail.example.org>"
    if rng.random() < 0.97:
        fields.append(("Message-ID", mid))
    if rng.random() < 0.35:
        refs = [f"<reply-{rng.getrandbits(100):x}@gitlab.example.com>" if rng.random() < 0.5
                else f"<{rng.getrandbits(48):x}@mail.example.org>" for _ in range(rng.randint(1, 6))]
        fields.append(("In-Reply-To", refs[-1]))
        fields.append(("References", "\r\n ".join(refs)))
    r = rng.random()
    if r < 0.05:
        fields.append(("Auto-Submitted", rng.choice(("auto-replied", "auto-generated", "no", "No"))))
    elif r < 0.07:
        fields.append(("X-Autoreply", "yes"))
    elif r < 0.1:
        fields.append(("Precedence", rng.choice(("bulk", "list", "junk"))))
        fields.append(("List-Unsubscribe", "<mailto:unsubscribe@lists.example.org>, <https://lists.example.org/u>"))
    elif r < 0.13:
        fields.append(("List-Id", "Developers <dev.lists.example.org>"))
    if rng.random() < 0.1:
        fields.append(("X-Autorespond-Suppress", "All"))  # not fetched by name: here it is noise
    ct = rng.random()
    boundary = f"----=_Part_{rng.getrandbits(32)}_{rng.getrandbits(24)}"
    if ct < 0.4:
        fields.append(("Content-Type", "text/plain; charset=utf-8"))
    elif ct < 0.85:
        fields.append(("Content-Type", f'multipart/mixed;\r\n boundary="{boundary}"'))
    elif ct < 0.95:
        fields.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    else:
        fields.append(("Content-Type", 'multipart/report; report-type=delivery-status;\r\n\tboundary="b"'))
    if rng.random() < 0.2:
        fields.append(("Sender", rng.choice(_NAMES)[1]))
    if rng.random() < 0.2:
        fields.append(("Reply-To", _from(rng)))
    out = bytearray()
    for name, value in fields:
        out += f"{name}: {value}\r\n".encode()
    if rng.random() < 0.02:
        out += b"this line has no colon\r\n"
    if rng.random() < 0.03:
        out += "Subject2: latin-1 bytes: caf\xe9\r\n".encode("latin-1")
    out += b"\r\n"
    return bytes(out), t, len(out) + rng.randint(500, 400_000)


def blocks(n: int, seed: int = 13, now: datetime | None = None) -> list[tuple[bytes, datetime, int]]:
    rng = random.Random(seed)
    now = now or datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    return [header_block(rng, now) for _ in range(n)]
