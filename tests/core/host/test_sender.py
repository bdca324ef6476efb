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


def test_a_batch_that_cannot_be_built_ends_its_reply_with_one_error_and_the_next_is_whole() -> None:
    """A failure while building a batch must not end the sender: the host's request loop
    waits on it (`wait_idle`), and the next request's answers must be its own."""
    mine, its = multiprocessing.Pipe()
    sender = _Sender(_Outbox(its))
    sender.batch_s = 0.0

    def token_bytes(i: int) -> bytes:
        if i == 3:
            raise ValueError("token 3 has no bytes")
        return bytes([65 + i])

    sender.token_bytes = token_bytes
    sender.start()
    for i in range(6):
        sender.put(TokenEvent(i, chr(65 + i), 0.5, ()))
    sender.put(_END)
    sender.wait_idle()  # returns: every item was served
    first: list[Any] = []
    while mine.poll(0.2):
        first.append(mine.recv())
    kinds = [m[0] for m in first]
    assert kinds.count("error") == 1 and "ok" not in kinds, kinds
    assert "token 3 has no bytes" in str(first[kinds.index("error")][1])
    # the next reply is whole and ends with its own answer
    for i in (0, 1):
        sender.put(TokenEvent(i, chr(65 + i), 0.5, ()))
    sender.put(_END)
    sender.wait_idle()
    second: list[Any] = []
    while (message := mine.recv())[0] != "ok":
        second.append(message)
    assert [r.token_id for m in second for r in m[1].records] == [0, 1]
    assert not mine.poll(0.1)
