"""Listing: a view's messages streamed in batches, through the persistent header cache when
there is one (flags refreshed from the server: CHANGEDSINCE with CONDSTORE, else a FLAGS fetch),
and the fetch that resumes after a lost connection.

:class:`Listing` is mixed into :class:`~triage_tui.services.triage.TriageService`; it uses the
service's ``analysis``, ``cache``, ``limits``, ``capabilities``, ``reader``, ``search``,
``_retrying``, ``_backoff`` and ``_check_uidvalidity``."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from triage_tui.domain import uidset
from triage_tui.domain.analysis import AnalysisConfig, build_message, held_back
from triage_tui.domain.classify import Duplicates
from triage_tui.domain.model import LIST_HEADER_FIELDS, Message, View
from triage_tui.errors import ConnectionFailed, OperationFailed
from triage_tui.services import parallel
from triage_tui.services.cache import (
    KEEP,
    RECENT,
    ChunkValues,
    HeaderCache,
    InOrder,
    Rebuilder,
    Token,
    same_message,
    split_flags,
)
from triage_tui.services.imapwire import FetchRecord
from triage_tui.services.parallel import BuildPool, built_in_order
from triage_tui.services.plan_types import MAX_MODSEQ

LIST_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (" + " ".join(LIST_HEADER_FIELDS) + ")]"
# Received is the bulkiest field (several long lines per message) and GitLab consults it only when
# To, References, Delivered-To, X-Delivered-To, Envelope-To and X-Envelope-To carry no key: the
# first pass leaves it out and a second pass fetches it for the few messages that need it.
FIRST_PASS_ITEMS = LIST_ITEMS.replace(" RECEIVED", "")
LIGHT_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE"
#: a cold listing writes its new rows to the header cache this many at a time
COMMIT_EVERY = 20_000
#: a warm start that rebuilds this many rows from the cache freezes them out of the cyclic GC
FREEZE_ROWS = 5_000


@contextlib.contextmanager
def _collector_off() -> Iterator[None]:
    """The cyclic GC off meanwhile (process-wide: it is one collector), and back on after if it
    was on. Building or rebuilding rows allocates tens of objects per row, none cyclic, that the
    collector would scan over and over. (A warm start's rebuilt rows, long-lived, are also
    frozen out of the collector's generations: see :meth:`WarmRows.parts`; or the next
    collections scan them all, ~100 ms each at 90k: a frozen UI.)"""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


#: answers sent with a SEARCH are used only by a listing that starts within this many seconds
PREFETCH_FRESH_S = 30.0


class WarmRows:
    """A warm start's cached rows, rebuilt in the view's order (:meth:`parts`): the flags
    refreshed from the server, \\Recent where the server has it, the expunged ones left out."""

    def __init__(self, uids: list[int], rows: dict[int, tuple[str, int, int]], values: ChunkValues,
                 changed: dict[int, tuple[str, ...]], recent: set[int], gone: set[int], rebuild: Rebuilder) -> None:
        self.uids, self.rows, self.values = uids, rows, values
        self.changed, self.recent, self.gone, self.rebuild = changed, recent, gone, rebuild
        self.misses: list[int] = []  # the UIDs to fetch (not cached, or damaged), in order
        self.rest: list[Message] = []  # rows after the first of those, in order
        self.late: list[Message] = []  # rows a cold listing's second pass would bring, in order

    def parts(self, step: int, two_pass: bool,
              see: Callable[[list[Message]], None] | None = None) -> Iterator[list[Message]]:
        """The rows before the first UID to fetch, ``step`` at a time; then :attr:`misses`,
        :attr:`rest` and :attr:`late` hold the others (``two_pass``: a cold listing's second pass
        brings the rows whose key is in Received or after it: :func:`~triage_tui.domain.analysis.held_back`).

        The cyclic GC is off while rows are rebuilt (see :func:`_collector_off`), and as it was
        while the caller has a part (a caller that keeps this generator without finishing it
        must not leave the process without a collector). A large listing's rows are frozen out
        of it as each part goes out: the collections the caller meets (the UI's own young pass
        as it adds them, too) would otherwise scan every row made so far, again and again.
        ``see`` is given every row rebuilt (a part's worth at a time, before the part goes out:
        the rows held back or waiting for their place too)."""
        values = self.values
        take, decode = values.got.pop, values.decode
        rows, changed, recent, gone, rebuild = self.rows, self.changed, self.recent, self.gone, self.rebuild
        misses, rest, late = self.misses, self.rest, self.late
        split: dict[str, tuple[str, ...]] = {}  # flags text -> tuple: a few distinct sets
        held_memo: dict[str | None, bool] = {}
        part: list[Message] = []
        to_see: list[Message] = []  # rebuilt since ``see`` was last given rows
        made = 0
        was_enabled = gc.isenabled()
        freeze = was_enabled and len(self.uids) >= FREEZE_ROWS
        gc.disable()
        try:
            for u in self.uids:
                v = take(u, None)
                if v is None and (v := decode(u)) is None:
                    misses.append(u)
                    continue
                if u in gone:
                    continue  # expunged since the SEARCH: a cold listing would not show it either
                fresh = changed.get(u)
                if fresh is not None:
                    flags = tuple(f for f in fresh if f != RECENT)
                else:
                    text = rows[u][0]
                    flags = split.get(text)  # type: ignore[assignment]
                    if flags is None:
                        flags = split[text] = split_flags(text)
                if recent and u in recent:
                    flags += (RECENT,)  # where the server puts it: last
                try:
                    m = rebuild(u, flags, v)
                except Exception:  # noqa: BLE001 - a damaged row: fetched again
                    misses.append(u)
                    continue
                made += 1
                to_see.append(m)
                if two_pass:
                    h = m.matched_header
                    held = held_memo.get(h)
                    if held is None:
                        held = held_memo[h] = held_back(h)
                    if held:
                        late.append(m)
                        continue
                if misses:
                    rest.append(m)
                    continue
                part.append(m)
                if len(part) >= step:
                    if see is not None:
                        see(to_see)
                    to_see = []
                    if freeze:
                        gc.freeze()
                    if was_enabled:
                        gc.enable()
                    yield part
                    gc.disable()
                    part = []
        finally:
            if was_enabled:
                if freeze and made:
                    gc.freeze()
                gc.enable()
        if see is not None:
            see(to_see)  # also the rows waiting in rest and late: seen before any of them goes out
        if part:
            yield part


class Listing:
    """The listing of :class:`~triage_tui.services.triage.TriageService`."""

    #: what :meth:`_search_warm` asked with the SEARCH (the EXAMINE's info, since, changed flags, \\Recent
    #: and when); taken once, by the listing that follows the SEARCH
    _prefetched: tuple[Any, int, dict[int, tuple[str, ...]], list[int], list[tuple[int, int]], float,
                       dict[int, tuple[Any, Any]]] | None = None
    #: the cache load started by :meth:`_start_preload`: (EXAMINE answer, HIGHESTMODSEQ, thread, result box)
    _preload: tuple[Any, int, threading.Thread, dict[str, Any]] | None = None

    def iter_list(self, view: View = View.UNSEEN, *, headers: bool = True, uids: list[int] | None = None,
                  now: datetime | None = None, narrow: str | None = None) -> Iterator[list[Message]]:
        """Stream the view as batches of :class:`Message` while chunks arrive. ``narrow``: see
        :meth:`search`; callers still apply their filter to what comes back."""
        uidvalidity, found = self.search(view, narrow, warm=headers)
        if uids is not None:
            wanted = set(uids)
            found = [u for u in found if u in wanted]
        yield from self.iter_messages(uidvalidity, found, headers=headers, now=now)

    def iter_messages(self, uidvalidity: int, uids: list[int], *, headers: bool = True,
                      now: datetime | None = None) -> Iterator[list[Message]]:
        """Fetch and build messages chunk by chunk.

        With an address template, the first pass leaves out Received (the bulkiest field); the
        few messages whose key GitLab could find in Received are held back and fetched again with
        it once the first pass is done (one connection carries one pipeline at a time), so they
        arrive in a last batch.

        Duplicate Message-IDs are judged among ``uids``, as each row goes out (the later copies
        are the duplicates: :class:`~triage_tui.domain.classify.Duplicates`); the rows are seen
        as they are built, in ascending UID order, so the held-back ones count from the start."""
        dups = Duplicates()
        mark = dups.mark
        built = self._iter_built(uidvalidity, uids, headers, now, dups.see)
        try:
            for batch in built:
                mark(batch)
                yield batch
        finally:
            built.close()  # a caller that stops early: the pool, the cache and the collector, now

    def _iter_built(self, uidvalidity: int, uids: list[int], headers: bool, now: datetime | None,
                    see: Callable[[list[Message]], None]) -> Iterator[list[Message]]:
        """:meth:`iter_messages` without the duplicate verdicts; ``see`` is given every row as it
        is built (the held-back ones too), before any row with a higher UID goes out."""
        now = now or datetime.now(UTC)
        cfg = self.analysis
        cache = self.cache if headers and self.cache is not None and self.cache.usable else None
        modseq: int | None = None
        token = None
        two_pass = headers and bool(cfg.address)
        step = max(1, self.limits.max_count)
        early = late = None  # cached rows, given out where a cold listing gives them
        late_rows: list[Message] = []
        if cache is not None:
            warm, modseq, token = self._warm(cache, uidvalidity, uids, now)
            if warm is not None:
                # Cached rows go out as they are rebuilt (a chunk decoded at a time), up to the
                # first UID that must be fetched: what a cold listing would give before it.
                # The rows after it wait for their place among the fetched ones (InOrder); the
                # rows a cold listing holds back for its second pass come last.
                yield from warm.parts(step, two_pass, see)
                late_rows = warm.late
                uids = warm.misses
                early = InOrder(warm.rest, uids)
            if token is None or not cache.usable:
                cache = None
        pending: list[tuple[int, str, tuple[Any, ...]]] = []  # new rows for the cache
        items = (FIRST_PASS_ITEMS if two_pass else LIST_ITEMS) if headers else LIGHT_ITEMS
        held: list[int] = []
        pool = self._build_pool(uidvalidity, len(uids), now) if headers else None

        def build(records: list[FetchRecord]) -> list[Message]:
            return self._build(records, uidvalidity, cfg, now)

        def build_first(records: list[FetchRecord]) -> list[Message]:
            return self._build(records, uidvalidity, cfg, now, first_pass=two_pass)

        try:
            for records, messages, known in built_in_order(self._resumable_fetch(uidvalidity, uids, items),
                                                           build_first, pool, first_pass=two_pass):
                see(messages)
                if two_pass:
                    ready = []
                    for m in messages:
                        if held_back(m.matched_header):
                            held.append(m.uid)
                        else:
                            ready.append(m)
                    messages = ready
                if messages and cache is not None:  # encoded now: the caller may change them afterwards
                    pending.extend(cache.rows_of(messages, uidvalidity, known))
                    if len(pending) >= COMMIT_EVERY and token is not None:
                        # written while the listing goes on (the main process mostly waits on
                        # the socket and the workers then), not all at its end
                        token = cache.commit(token, rows=pending, modseq=KEEP)
                        pending = []
                        if token is None:
                            cache = None
                if early is not None and records:
                    messages = early.with_batch(max(r.uid or 0 for r in records), messages)
                if messages:
                    yield messages
            if early is not None:  # the first pass is done: then what a cold second pass lists
                late = InOrder(late_rows, held)
                part = early.rest() + late.before_fetch()
                for i in range(0, len(part), step):
                    yield part[i:i + step]
            if held:
                for records, messages, known in built_in_order(
                        self._resumable_fetch(uidvalidity, held, LIST_ITEMS), build,
                        pool if len(held) >= parallel.MIN_MESSAGES else None):
                    if cache is not None:
                        pending.extend(cache.rows_of(messages, uidvalidity, known))
                    if late is not None and records:
                        messages = late.with_batch(max(r.uid or 0 for r in records), messages)
                    yield messages
            if late is not None and (part := late.rest()):
                for i in range(0, len(part), step):
                    yield part[i:i + step]
        finally:
            if pool is not None:
                pool.close()
            if cache is not None and token is not None:  # what arrived, also when the listing stops early
                cache.commit(token, rows=pending, modseq=modseq)

    def _search_warm(self, view: View, narrow: str | None) -> tuple[tuple[int, list[int]] | None, Any]:
        """The view's SEARCH pipelined with what a warm listing asks next (the flags changed
        since the cache's HIGHESTMODSEQ, and \\Recent): one round trip less. The answers wait in
        ``_prefetched`` for :meth:`_warm_rows`, which takes them only for the same EXAMINE and the
        same ``since``. Returns ((UIDVALIDITY, UIDs) or None, the EXAMINE's answer if one was
        sent); None where it is not possible (no cache or nothing in it for this UIDVALIDITY, no
        CONDSTORE or ESEARCH, a view that needs more than one SEARCH, a refusal)."""
        self._prefetched = None
        cache = self.cache
        if cache is None or not cache.usable or view in (View.IGNORED, View.SEEN_STUCK):
            return None, None
        r = self.reader
        caps = self.capabilities
        if "CONDSTORE" not in caps or "ESEARCH" not in caps or getattr(r, "search_and_changes", None) is None:
            return None, None
        info = r.examine()
        h0 = info.highestmodseq
        since = cache.peek_since(info.uidvalidity, h0) if h0 is not None and 0 < h0 <= MAX_MODSEQ else None
        if since is None:
            return None, info
        probe = cache.top_uids()  # before the preload: it holds the cache's lock until it is done
        self._start_preload(cache, info, h0)  # the cache is read while the server searches
        try:
            found, changed, recent, alive, probed = r.search_and_changes(
                f"{view.search} {narrow}" if narrow else view.search, since, probe)
        except OperationFailed:
            return None, info  # asked again one by one, where each refusal is handled as usual
        self._prefetched = (info, since, changed, recent, alive, time.monotonic(), probed)
        return (info.uidvalidity, found), info

    def _start_preload(self, cache: HeaderCache, info: Any, h0: int) -> None:
        """:meth:`HeaderCache.load` (every chunk: the view's UIDs are not known yet) in a thread,
        while the server answers the SEARCH burst; :meth:`_warm_rows` takes it for the same
        EXAMINE and HIGHESTMODSEQ. The load is mostly SQLite and the wait mostly the socket:
        neither holds the GIL for long."""
        self._join_preload()
        box: dict[str, Any] = {}

        def preload() -> None:
            with _collector_off():
                box["loaded"] = cache.load(info.uidvalidity, h0, None, uidnext=info.uidnext)

        t = threading.Thread(target=preload, name="triage-cache-load", daemon=True)
        self._preload = (info, h0, t, box)
        t.start()

    def _join_preload(self) -> tuple[Any, int, dict[str, Any]] | None:
        """Wait for a preload started by :meth:`_start_preload`, taking it: (EXAMINE answer,
        HIGHESTMODSEQ, {"loaded": what load returned} or {} if it raised)."""
        pre, self._preload = self._preload, None
        if pre is None:
            return None
        pre[2].join()
        return pre[0], pre[1], pre[3]

    def _take_prefetched(self, since: int) -> tuple[dict[int, tuple[str, ...]], list[int], list[tuple[int, int]],
                                                    dict[int, tuple[Any, Any]]] | None:
        """(changed flags, \\Recent UIDs, every UID as runs, the probed UIDs' INTERNALDATE and
        size) asked with the SEARCH, if they fit."""
        pre, self._prefetched = self._prefetched, None
        if pre is None or pre[0] is not self.reader.mailbox or pre[1] != since \
                or not 0 <= time.monotonic() - pre[5] < PREFETCH_FRESH_S:
            return None
        return pre[2], pre[3], pre[4], pre[6]

    def _build_pool(self, uidvalidity: int, count: int, now: datetime) -> BuildPool | None:
        """Worker processes for a large listing (see :mod:`triage_tui.services.parallel`), or None."""
        workers = self.limits.workers
        if workers is None:
            workers = parallel.auto_workers()
        if workers <= 0 or count < parallel.MIN_MESSAGES:
            return None
        try:
            return BuildPool(self.analysis, uidvalidity, now, workers)
        except Exception:  # noqa: BLE001 - no processes here (a sandbox, a limit): build in process
            return None

    def _warm(self, cache: HeaderCache, uidvalidity: int, uids: list[int],
              now: datetime) -> tuple[WarmRows | None, int | None, Token | None]:
        """:meth:`_warm_rows` with the cyclic GC off: reading the cache's index was a third
        collections (20k). The rows themselves are rebuilt by the caller (:meth:`WarmRows.parts`,
        which handles the GC itself)."""
        with _collector_off():
            return self._warm_rows(cache, uidvalidity, uids, now)

    def _warm_rows(self, cache: HeaderCache, uidvalidity: int, uids: list[int],
                   now: datetime) -> tuple[WarmRows | None, int | None, Token | None]:
        """The cached part of a listing: ``(its rows to rebuild, or None: fetch every UID; the
        HIGHESTMODSEQ their flags are known at; the cache's token)``. Flags come from the
        server: with CONDSTORE, what changed since the stored HIGHESTMODSEQ; else a FLAGS fetch
        of every cached UID (which also finds the expunged ones). The refreshed flags are
        written before any row is given out: a refresh that cannot be written lists without the
        cache, as if it were empty."""
        info = self.reader.mailbox  # as the SEARCH that found ``uids`` saw it
        if info is None or info.uidvalidity != uidvalidity:
            return None, None, None
        h0 = info.highestmodseq if "CONDSTORE" in self.capabilities else None
        if h0 is not None and not 0 < h0 <= MAX_MODSEQ:
            h0 = None  # an absurd HIGHESTMODSEQ: refresh every cached UID's flags instead
        pre = self._join_preload()
        if pre is not None and pre[0] is info and pre[1] == h0 and "loaded" in pre[2]:
            loaded = pre[2]["loaded"]  # read while the server searched
        else:
            loaded = cache.load(uidvalidity, h0, uids, uidnext=info.uidnext)
        if loaded is None:
            return None, None, None
        rows, since = loaded.rows, loaded.since
        if not rows:  # nothing cached: the rows this listing adds are known at h0
            return None, h0, loaded.token
        if not loaded.values.has_any(uids):  # none of these is cached (new mail only): leave the rest as it is
            kept = loaded.token.modseq
            return None, kept if isinstance(kept, int) else None, loaded.token
        wanted = set(uids)
        probed: dict[int, tuple[Any, Any]] = {}
        try:
            recent_found: list[int] | None = None
            if since is not None:  # the changed flags and \\Recent in one round trip (or asked with the SEARCH)
                pre = self._take_prefetched(since)
                extra = [u for u in rows if u not in wanted]
                if pre is not None:
                    changed, recent_found, every, probed = pre
                    gone = [u for u in extra if not uidset.contains(every, u)]
                else:
                    changed, recent_found = self._retrying("listing",
                                                           lambda: self._changed_and_recent(uidvalidity, since))
                    alive = set(self._retrying("listing", lambda: self._alive(uidvalidity, extra))) if extra else set()
                    gone = [u for u in extra if u not in alive]
            else:
                changed, gone = self._retrying("listing", lambda: self._flags_of(uidvalidity, sorted(rows)))
        except OperationFailed as e:  # a server refusing CHANGEDSINCE: list without the cache
            cache._give_up(e)
            return None, None, None
        recent = set(recent_found if recent_found is not None
                     else self._retrying("listing", lambda: self.reader.search("RECENT")))
        gone_set = set(gone)
        # A server restored from a backup (or a mailbox made again) with the same UIDVALIDITY
        # gives the UIDs after the backup to new mail, which the cache holds for the old: the
        # checks of the load (HIGHESTMODSEQ or UIDNEXT gone back) see it only until enough new
        # mail has arrived. Any such UID makes the highest cached UID still on the server one
        # too (every message above the backup is new), so that one is asked for.
        top = max((u for u in rows if u not in gone_set), default=None)
        if top is not None and not (same_message(loaded.values.peek(top), *probed[top]) if top in probed else
                                    self._retrying("listing", lambda: self._still_cached(uidvalidity, top, loaded))):
            loaded = cache.load(uidvalidity, h0, uids, uidnext=info.uidnext, reset=True)
            return None, h0, loaded.token if loaded is not None else None
        today = int(time.time() // 86_400)
        used = [u for u in uids if (row := rows.get(u)) is not None and row[1] != today and u not in gone_set]
        token = cache.commit(loaded.token, flags={u: f for u, f in changed.items() if u in rows}, used=used,
                             gone=gone, modseq=h0)
        if token is None:  # the refresh could not be written: list without the cache
            return None, None, None
        return WarmRows(uids, rows, loaded.values, changed, recent, gone_set,
                        Rebuilder(uidvalidity, self.analysis.stale_after, now)), h0, token

    def _still_cached(self, uidvalidity: int, uid: int, loaded: Any) -> bool:
        """Whether the server's message under ``uid`` is still the cached one (INTERNALDATE and
        RFC822.SIZE; a UID no longer there has nothing to compare)."""
        r = self.reader
        assert r.mailbox is not None
        self._check_uidvalidity(uidvalidity, r.mailbox.uidvalidity)
        for batch in r.fetch_stream([uid], "UID INTERNALDATE RFC822.SIZE"):
            for rec in batch:
                if rec.uid == uid:
                    return same_message(loaded.values.peek(uid), rec.internaldate, rec.size)
        return True

    def _changed_and_recent(self, uidvalidity: int, since: int) -> tuple[dict[int, tuple[str, ...]], list[int]]:
        """``UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE since)``: the flags of every message changed
        since (RFC 7162), and the UIDs with ``\\Recent``: one round trip for both."""
        r = self.reader
        assert r.mailbox is not None
        self._check_uidvalidity(uidvalidity, r.mailbox.uidvalidity)
        return r.changed_since_and_search(since, "RECENT")

    def _flags_of(self, uidvalidity: int, uids: list[int]) -> tuple[dict[int, tuple[str, ...]], list[int]]:
        """The flags of ``uids`` (chunked, pipelined) and those no longer in the mailbox."""
        r = self.reader
        assert r.mailbox is not None
        self._check_uidvalidity(uidvalidity, r.mailbox.uidvalidity)
        out: dict[int, tuple[str, ...]] = {}
        for batch in r.fetch_stream(uids, "UID FLAGS"):
            for rec in batch:
                if rec.uid is not None and rec.flags is not None:
                    out[rec.uid] = rec.flags
        return out, [u for u in uids if u not in out]

    def _alive(self, uidvalidity: int, uids: list[int]) -> list[int]:
        r = self.reader
        assert r.mailbox is not None
        self._check_uidvalidity(uidvalidity, r.mailbox.uidvalidity)
        return r.search_within(uids, "ALL")

    def _resumable_fetch(self, uidvalidity: int, uids: list[int], items: str) -> Iterator[list[FetchRecord]]:
        """``fetch_stream`` that survives a lost connection: reconnect (backoff), check
        UIDVALIDITY, and go on with the UIDs not received yet."""
        remaining = uids
        received: set[int] = set()
        attempt = 0
        while True:
            try:
                for batch in self.reader.fetch_stream(remaining, items):
                    received.update(rec.uid for rec in batch if rec.uid is not None)
                    yield batch
                return
            except ConnectionFailed as e:
                attempt = self._backoff(e, attempt, "listing")
                try:
                    info = self.reader.mailbox
                except ConnectionFailed:
                    continue  # the next round counts another attempt
                assert info is not None
                self._check_uidvalidity(uidvalidity, info.uidvalidity)
                remaining = [u for u in remaining if u not in received]

    def _build(self, batch: list[FetchRecord], uidvalidity: int, cfg: AnalysisConfig, now: datetime,
               first_pass: bool = False) -> list[Message]:
        # a batch allocates ~50 small objects per message, none cyclic: collecting the young
        # generation over and over costs a third of the parse time for nothing
        with _collector_off():
            return [self._to_message(rec, uidvalidity, cfg, now, first_pass) for rec in batch]

    @staticmethod
    def _to_message(rec: FetchRecord, uidvalidity: int, cfg: AnalysisConfig, now: datetime,
                    first_pass: bool = False) -> Message:
        assert rec.uid is not None
        return build_message(rec.uid, uidvalidity, rec.flags or (), rec.internaldate, rec.size or 0,
                             rec.body, cfg, now, first_pass=first_pass)

    def list(self, view: View = View.UNSEEN, **kw: Any) -> list[Message]:
        """The whole view, with cross-message verdicts (duplicate Message-IDs) applied."""
        out: list[Message] = []
        for batch in self.iter_list(view, **kw):
            out.extend(batch)
        return out
