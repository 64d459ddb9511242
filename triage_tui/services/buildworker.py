"""A worker process of :mod:`triage_tui.services.parallel`: ``python -m
triage_tui.services.buildworker``.

Reads length-prefixed frames on stdin: first the pickled ``(AnalysisConfig, UIDVALIDITY, now)``,
then one pickled ``(first_pass, [(uid, flags, INTERNALDATE, size, header bytes), ...])`` per
batch (``first_pass``: see :func:`~triage_tui.domain.analysis.build_message`); answers
each batch, in order, with one frame on stdout: marshalled ``(rows, chunk, whole)``, ``rows`` a
list of ``(uid, flags, stored)`` (``stored``: whether the row is in ``chunk``), ``chunk`` the
header cache's chunk of the stored rows' values, as the cache writes it
(:func:`~triage_tui.services.cache.encode_chunk`; None when there is none), and ``whole`` the
pickled ``{uid: Message}`` of the rows the header cache cannot hold (or None). Ends at the end of stdin. The frames come from the
process that started it (its own pipes), never from the network."""

from __future__ import annotations

import contextlib
import gc
import marshal
import os
import pickle
import signal
import sys

from triage_tui.domain.analysis import build_message
from triage_tui.services.cache import encode_chunk, values
from triage_tui.services.parallel import read_frame, write_frame

#: Background work: below the process that reads the socket and draws the UI. On two cores, two
#: workers at the same priority took the UI thread's CPU for tens of ms at a time while a cold
#: listing loaded (event-loop stalls at 100k); the total work, and so the listing's end, is the same.
NICE = 10


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops us (it closes our stdin)
    with contextlib.suppress(OSError, AttributeError):  # not where priorities are not ours to set
        os.nice(NICE)
    gc.disable()  # a batch allocates many small objects, none cyclic (as Listing._build)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    setup = read_frame(inp)
    if setup is None:
        return 0
    cfg, uidvalidity, now = pickle.loads(setup)  # noqa: S301 - from the parent, over our own pipe
    while (frame := read_frame(inp)) is not None:
        rows = []
        stored = []
        whole = {}
        first_pass, items = pickle.loads(frame)  # noqa: S301 - as above
        for uid, flags, internaldate, size, body in items:
            m = build_message(uid, uidvalidity, flags, internaldate, size, body, cfg, now, first_pass=first_pass)
            v = values(m)
            if v is None:
                whole[uid] = m
            else:
                stored.append((uid, v))
            rows.append((uid, m.flags, v is not None))
        # the chunk made here, not in the main process: it stores these very bytes
        write_frame(out, marshal.dumps((rows, encode_chunk(stored) if stored else None,
                                        pickle.dumps(whole, protocol=pickle.HIGHEST_PROTOCOL) if whole else None)))
        gc.collect(0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        sys.exit(1)
