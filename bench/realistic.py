"""A realistic incoming-mailbox generator for the benchmarks (issue 13), deterministic by seed.

    from bench.realistic import seed
    user = seed(dovecot, 10_000)            # fills a tests.servers Dovecot maildir, ~90 % UNSEEN

What one message may carry (each drawn per message from ``random.Random(seed * 1_000_003 + i)``):

* RFC 2047 encoded words, B and Q, in many scripts and charsets (utf-8 CJK/Cyrillic/Arabic/Greek/
  emoji, iso-2022-jp, koi8-r, windows-1251, gb2312, iso-8859-7, shift_jis, big5, euc-kr), in
  Subject and display names, sometimes split over several words and folded lines;
* malformed headers: raw 8-bit bytes (latin-1 and utf-8) outside encoded words, broken encoded
  words (bad base64, unknown charset, unterminated), absurd/bad dates (``+2400``, year 0, text),
  a missing Date, very long folded headers, duplicated From/Subject/To;
* a Received chain of 2-8 hops, Authentication-Results, DKIM-Signature, References;
* every GitLab key kind in To/Delivered-To/Envelope-To (reply keys, project keys with and
  without an issue suffix, Service Desk, a custom suffix, no key at all, a key only in Received);
* bots: auto-replies (Auto-Submitted, X-Autoreply, "Automatic reply"), bounces (MAILER-DAEMON,
  multipart/report), noreply senders, [bot] display names;
* bodies: plain text, or multipart/mixed with 1-3 base64 attachments of 200 B to ~40 KiB.

The bytes depend only on ``(seed, i, now)``: the same arguments give the same mailbox.
"""

from __future__ import annotations

import base64
import email.utils
import os
import quopri
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DOMAIN = "incoming.gitlab.example.com"

# (charset, text) pairs: each text is encodable in its charset
SCRIPTS: tuple[tuple[str, str], ...] = (
    ("utf-8", "Ошибка при получении данных из репозитория"),
    ("utf-8", "ビルドが失敗しました：メインブランチ"),
    ("utf-8", "构建失败：请检查流水线配置"),
    ("utf-8", "فشل خط الأنابيب في الفرع الرئيسي"),
    ("utf-8", "Αποτυχία διοχέτευσης στον κύριο κλάδο"),
    ("utf-8", "Pipeline 🚀 failed 💥 on main ✅❌"),
    ("utf-8", "빌드 실패: 메인 브랜치"),
    ("utf-8", "Réponse automatique : absent du bureau"),
    ("utf-8", "שגיאה בצינור הבנייה"),
    ("iso-2022-jp", "ビルドが失敗しました"),
    ("shift_jis", "自動応答：不在です"),
    ("koi8-r", "Автоматический ответ: нет на месте"),
    ("windows-1251", "Не удалось доставить сообщение"),
    ("gb2312", "自动回复：我不在办公室"),
    ("big5", "自動回覆：休假中"),
    ("euc-kr", "자동 응답: 부재중"),
    ("iso-8859-7", "Αυτόματη απάντηση"),
    ("iso-8859-1", "Réponse: problème résolu"),
)
NAMES: tuple[tuple[str, str], ...] = (
    ("utf-8", "Иван Петров"), ("utf-8", "山田 太郎"), ("utf-8", "محمد علي"), ("utf-8", "Γιώργος Παπαδόπουλος"),
    ("utf-8", "José Müller 😀"), ("koi8-r", "Сергей Иванов"), ("windows-1251", "Ольга Смирнова"),
    ("iso-2022-jp", "佐藤 花子"), ("gb2312", "王伟"), ("iso-8859-1", "François Lefèvre"),
)
PLAIN_SUBJECTS = ("Re: Pipeline failed for main", "Error fetching data from FOO", "New issue: login broken",
                  "Re: [group/project] MR !42 needs rebase", "Question about the API rate limits",
                  "Re: Re: Re: Fwd: deployment window", "Your account", "Help: cannot push to repo",
                  "Your OTP code is 493021", "Sign in with this magic link")
BOT_SENDERS = ("noreply@github.com", "no-reply@ci.example.com", "notifications@monitoring.example.io",
               "alerts-bot@ops.example.net", "Jira [bot] <jira@tracker.example.org>",
               "do-not-reply@accounts.example.com")
HUMAN_DOMAINS = ("example.org", "mail.example.ru", "example.jp", "corp.example.cn", "example.gr", "uni.example.eg")


def _encoded_word(rng: random.Random, charset: str, text: str) -> str:
    """``text`` as one or more RFC 2047 words (B or Q), split between whole characters."""
    pieces = [text]
    if len(text) > 12 and rng.random() < 0.4:
        cut = rng.randint(4, len(text) - 4)
        pieces = [text[:cut], text[cut:]]
    words = []
    for p in pieces:
        raw = p.encode(charset)
        if charset.lower() == "iso-2022-jp" or rng.random() < 0.6:
            words.append(f"=?{charset}?B?{base64.b64encode(raw).decode()}?=")
        else:
            q = quopri.encodestring(raw, header=True).decode().replace("=\n", "").replace("?", "=3F")
            words.append(f"=?{charset}?Q?{q}?=")
    sep = "\r\n " if rng.random() < 0.5 else " "
    return sep.join(words)


def _broken_word(rng: random.Random) -> str:
    return rng.choice([
        "=?utf-8?B?0J7RiNC40LHQutCw!!?=",             # bad base64
        "=?x-unknown-charset?Q?caf=E9?= au lait",        # unknown charset
        "=?utf-8?Q?unterminated=20word",               # never closed
        "=?utf-8?B?" + "QUFB" * 600 + "?=",             # a 2.4 kB word
        "=??B?AAAA?=", "=?utf-8?X?bad-encoding?=",
        "=?utf-8?B?/////w==?=",                          # decodes to invalid utf-8
    ])


def _date(rng: random.Random, ts: float) -> str | None:
    r = rng.random()
    if r < 0.93:
        return email.utils.formatdate(ts, localtime=False)
    return rng.choice([None, "Mon, 32 Foo 2026 25:61:61 +2400", "Tue, 01 Jan 0000 00:00:00 +0000",
                       "yesterday", "Wed, 10 Mar 2026 12:00:00 +9999", "", "Fri, 31 Dec 9999 23:59:59 -2400",
                       email.utils.formatdate(ts, localtime=False).replace(" +0000", "")])


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _key(rng: random.Random) -> tuple[str | None, str]:
    """(key, kind) as GitLab's incoming address sees them (``received-only``: the key is only in
    a Received ``for <...>`` clause, To has none)."""
    kind = rng.choices(["reply", "reply-partitioned", "new-issue", "new-mr", "service-desk", "unsubscribe",
                        "custom", "none", "received-only"], [24, 10, 14, 6, 12, 3, 5, 10, 6])[0]
    b36 = "0123456789abcdefghijklmnopqrstuvwxyz"
    slug = rng.choice(["group-project", "grp-sub-team", "a.b-c", "gitlab-org-gitlab"])
    if kind in ("reply", "received-only"):
        return _hex(rng, 128), kind
    if kind == "reply-partitioned":
        part = "".join(rng.choice(b36) for _ in range(rng.randint(1, 4)))
        token = "".join(rng.choice(b36) for _ in range(25))
        return f"{part}-{token}" + (f"-{rng.randint(1, 10**9):x}" if rng.random() < 0.5 else ""), kind
    if kind == "new-issue":
        return f"{slug}-{rng.randint(1, 99999)}-{_hex(rng, 100)}-issue", kind
    if kind == "new-mr":
        return f"{slug}-{rng.randint(1, 99999)}-{_hex(rng, 100)}-merge-request", kind
    if kind == "service-desk":
        return f"{slug}-{rng.randint(1, 99999)}-issue-", kind
    if kind == "unsubscribe":
        return f"{_hex(rng, 128)}-unsubscribe", kind
    if kind == "custom":
        return f"{rng.choice(['ops', 'support', 'team-x'])}-{_hex(rng, 32)}", kind
    return None, kind


def _addr_for(key: str | None) -> str:
    return f"incoming+{key}@{DOMAIN}" if key is not None else f"incoming@{DOMAIN}"


def _received(rng: random.Random, ts: float, key: str | None, in_received: bool) -> list[tuple[str, str]]:
    hops = rng.randint(2, 8)
    out = []
    for n in range(hops):
        ip = f"{rng.choice([192, 198, 203])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        target = f" for <{_addr_for(key)}>" if in_received and n == 0 else ""
        out.append(("Received", f"from mx{n}.relay{rng.randint(1, 99)}.example.net (mx{n}.example.net [{ip}])\r\n"
                                f"\tby mx{n + 1}.example.com (Postfix) with ESMTPS id {_hex(rng, 48).upper()}{target};\r\n"
                                f"\t{email.utils.formatdate(ts - 3 * (hops - n), localtime=False)}"))
    return out


def _folded_long(rng: random.Random, name: str) -> tuple[str, str]:
    words = [f"<{_hex(rng, 96)}@mail.example.org>" for _ in range(rng.randint(20, 120))]
    return name, "\r\n\t".join(words)


def _body(rng: random.Random, boundary: str, bounce: bool) -> tuple[str, bytes]:
    text = ("Hello,\r\n\r\n" + "The pipeline for the main branch failed again, see the job log.\r\n" * rng.randint(2, 40))
    if bounce:
        report = (f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                  "This is the mail system at host mx.example.net.\r\nI'm sorry to have to inform you...\r\n"
                  f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
                  "Reporting-MTA: dns; mx.example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                  f"--{boundary}--\r\n")
        return f'multipart/report; report-type=delivery-status; boundary="{boundary}"', report.encode()
    n_att = rng.choices([0, 1, 2, 3], [60, 25, 10, 5])[0]
    if not n_att:
        return "text/plain; charset=utf-8", text.encode()
    parts = [f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"]
    for k in range(n_att):
        size = int(rng.choice([200, 1_000, 4_000, 12_000, 40_000]) * rng.uniform(0.5, 1.0))
        blob = base64.encodebytes(rng.randbytes(size)).replace(b"\n", b"\r\n").decode()
        parts.append(f"--{boundary}\r\nContent-Type: application/octet-stream; name=\"log-{k}.bin\"\r\n"
                     f"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"log-{k}.bin\"\r\n"
                     f"\r\n{blob}")
    return f'multipart/mixed; boundary="{boundary}"', ("".join(parts) + f"--{boundary}--\r\n").encode()


def message(seed_: int, i: int, ts: float) -> tuple[bytes, str]:
    """(raw bytes, flags) of message ``i``: flags ``"S"`` for ~10 % (seen), else ``""``."""
    rng = random.Random(seed_ * 1_000_003 + i)
    key, kind = _key(rng)
    to = _addr_for(key if kind != "received-only" else None)
    bot = rng.choices(["", "autoreply", "bounce", "noreply", "botname"], [70, 10, 6, 10, 4])[0]
    headers: list[tuple[str, str]] = []
    # sender
    if bot == "bounce":
        from_ = rng.choice(["MAILER-DAEMON@mx.example.net", "Mail Delivery System <mailer-daemon@example.org>",
                            "postmaster@example.com"])
    elif bot in ("noreply", "botname"):
        from_ = rng.choice(BOT_SENDERS)
    else:
        local = f"user{rng.randint(1, 50000)}@{rng.choice(HUMAN_DOMAINS)}"
        r = rng.random()
        if r < 0.45:
            cs, name = rng.choice(NAMES)
            from_ = f"{_encoded_word(rng, cs, name)} <{local}>"
        elif r < 0.5:
            from_ = f'"{rng.choice(NAMES)[1]}" <{local}>'  # raw utf-8 display name: 8-bit header
        else:
            from_ = f"{local.split('@')[0].title()} <{local}>"
    # subject
    r = rng.random()
    if bot == "autoreply":
        subject = rng.choice(["Automatic reply: ", "Out of office: ", "Auto: "]) + rng.choice(PLAIN_SUBJECTS)
    elif bot == "bounce":
        subject = rng.choice(["Undelivered Mail Returned to Sender", "Delivery Status Notification (Failure)"])
    elif r < 0.45:
        subject = _encoded_word(rng, *rng.choice(SCRIPTS))
        if rng.random() < 0.3:
            subject = "Re: " + subject
    elif r < 0.5:
        subject = _broken_word(rng)
    elif r < 0.53:
        subject = rng.choice(SCRIPTS)[1]  # raw 8-bit subject
    else:
        subject = f"{rng.choice(PLAIN_SUBJECTS)} #{i}"
    headers += _received(rng, ts, key, kind == "received-only")
    headers += [("Return-Path", "<>" if bot == "bounce" else f"<{_hex(rng, 32)}@bounce.example.org>"),
                ("Delivered-To", to),
                ("Authentication-Results", f"mx.example.com; spf=pass smtp.mailfrom=example.org;\r\n"
                                           f"\tdkim=pass header.d=example.org header.s=s{rng.randint(1, 9)}"),
                ("DKIM-Signature", f"v=1; a=rsa-sha256; d=example.org; s=s1;\r\n\tb={base64.b64encode(rng.randbytes(96)).decode()}"),
                ("From", from_), ("To", to)]
    if rng.random() < 0.2:
        cs, name = rng.choice(NAMES)
        headers.append(("Cc", f"{_encoded_word(rng, cs, name)} <cc{rng.randint(1, 999)}@example.org>, other@example.net"))
    headers.append(("Subject", subject))
    d = _date(rng, ts)
    if d is not None:
        headers.append(("Date", d))
    headers.append(("Message-ID", f"<{_hex(rng, 64)}.{i}@{rng.choice(HUMAN_DOMAINS)}>"))
    if kind == "reply" or rng.random() < 0.3:
        headers.append(("In-Reply-To", f"<note_{rng.randint(1, 10**9)}@gitlab.example.com>"))
        headers.append(("References", f"<reply-{key or _hex(rng, 128)}@{DOMAIN}>"))
    if rng.random() < 0.05:
        headers.append(_folded_long(rng, "References"))
    if bot == "autoreply":
        headers.append(rng.choice([("Auto-Submitted", "auto-replied"), ("X-Autoreply", "yes"),
                                   ("Precedence", "auto_reply")]))
    if bot in ("noreply", "botname") and rng.random() < 0.5:
        headers.append(("Auto-Submitted", "auto-generated"))
    if rng.random() < 0.03:  # duplicated headers
        headers.append(rng.choice([("From", "second-from@example.org"), ("Subject", "a second subject"),
                                   ("To", f"incoming+{_hex(rng, 128)}@{DOMAIN}")]))
    if rng.random() < 0.02:
        headers.append(("X-Garbage", "raw latin-1 \xe9\xe8 and control \x01 bytes"))
    boundary = f"=_{_hex(rng, 64)}"
    ctype, body = _body(rng, boundary, bot == "bounce")
    headers += [("MIME-Version", "1.0"), ("Content-Type", ctype)]
    if not ctype.startswith("multipart"):
        headers.append(("Content-Transfer-Encoding", "8bit"))
    head = bytearray()
    for name, value in headers:
        if name == "X-Garbage":  # the deliberate latin-1 bytes
            head += f"{name}: ".encode() + value.encode("latin-1") + b"\r\n"
        else:
            head += f"{name}: {value}\r\n".encode()
    flags = "S" if rng.random() < 0.10 else ""
    return bytes(head) + b"\r\n" + body, flags


def messages(n: int, *, seed_: int = 13, now: float | None = None, step: float = 30.0
             ) -> Iterator[tuple[bytes, float, str]]:
    """``n`` messages oldest first, one every ``step`` seconds up to ``now``, as ``Dovecot.seed`` takes them."""
    now = float(int(now if now is not None else time.time()))
    for i in range(n):
        ts = now - (n - i) * step
        raw, flags = message(seed_, i, ts)
        yield raw, ts, flags


def seed(server: object, n: int, *, seed_: int = 13, now: float | None = None, user: str | None = None,
         quiet: bool = False) -> str:
    """A new user on a ``tests.servers.Dovecot`` with ``n`` realistic messages in INBOX; returns the user."""
    user = user or server.new_user("real")  # type: ignore[attr-defined]
    t = time.perf_counter()
    server.seed(user, messages(n, seed_=seed_, now=now))  # type: ignore[attr-defined]
    if not quiet:
        print(f"  seeded {n} realistic messages in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return user


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="write realistic messages as .eml files (to look at them)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for i, (raw, _ts, flags) in enumerate(messages(a.n, seed_=a.seed, now=1_790_000_000)):
        (a.out / f"{i:06d}{'-seen' if flags else ''}.eml").write_bytes(raw)
    print(f"wrote {a.n} messages to {a.out}", file=sys.stderr)
    os.sync()


if __name__ == "__main__":
    main()
