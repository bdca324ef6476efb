"""The engine host's sender thread, in this process over a real pipe."""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any

from app.core.host.host_child import _END, _Outbox, _Sender
from app.core.host.protocol import TokenBatch
from app.core.inference.events import TokenEvent


class _CountingQueue(queue.Queue[Any]):
    """A queue that counts the blocking gets that found it empty (each one a wake-up
    when the next item comes)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block and self.empty():
            self.waits += 1
        return super().get(block, timeout)


def test_mid_stream_the_sender_wakes_once_per_batch_not_for_each_token() -> None:
    mine, its = multiprocessing.Pipe()
    sender = _Sender(_Outbox(its))
    counting = _CountingQueue()
    sender._queue = counting
    sender.batch_s = 0.02
    sender.token_bytes = lambda i: bytes([65 + i % 26])
    sender.start()
    n = 150
    for i in range(n):  # a token a millisecond or so, as a fast decode makes them
        sender.put(TokenEvent(i, chr(65 + i % 26), 0.5, ()))
        time.sleep(0.001)
    sender.put(_END)
    batches: list[TokenBatch] = []
    while (message := mine.recv())[0] != "ok":
        batches.append(message[1])
    assert [r.token_id for b in batches for r in b.records] == list(range(n))
    assert "".join(b.text for b in batches) == "".join(chr(65 + i % 26) for i in range(n))
    assert len(batches) >= 3
    # Only the reply's first token is waited for on the queue; after it the sender sleeps
    # until each batch is due. Waiting on the queue after each batch would wake it for the
    # next token as well: about one wait per batch.
    assert counting.waits <= 1 + len(batches) // 4, (counting.waits, len(batches))
