"""The probabilities kept per token are the model's own: checked against llama.cpp's logits.

The reference is computed independently: llama-cpp-python's `Llama` with `logits_all=True`
reads the same prompt and reply tokens in its own context, and numpy takes a float64
log-softmax of every row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from app.core.inference.engine import Engine
from app.core.inference.events import TokenEvent
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord, pack, record_from_event, unpack

THREADS = 2
N_CTX = 512
GREEDY = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=32)
PROMPT = [Message("user", "Write a haiku about a fireplace.")]
TOLERANCE = 1e-4


def generate(model: Path, top_n: int) -> tuple[list[int], list[TokenRecord]]:
    engine = Engine()
    engine.load(model, LoadOptions(n_ctx=N_CTX, n_threads=THREADS, flash_attn="off"))
    try:
        prompt = list(engine.plan(PROMPT, GREEDY.max_tokens).tokens)
        events = engine.generate(PROMPT, GREEDY, top_n=top_n)
        records = [
            record_from_event(e, engine.token_bytes) for e in events if isinstance(e, TokenEvent)
        ]
    finally:
        engine.close()
    return prompt, records


def reference_logprobs(model: Path, prompt: list[int], reply: list[int]) -> npt.NDArray[np.float64]:
    """Row k: log-softmax of the logits that chose reply token k (prompt read in one batch,
    then the reply token by token, as a chat reads them)."""
    from llama_cpp import Llama

    llm = Llama(
        str(model),
        n_ctx=N_CTX,
        n_threads=THREADS,
        n_batch=512,
        logits_all=True,
        flash_attn=False,
        verbose=False,
    )
    try:
        llm.eval(prompt)
        for token in reply[:-1]:
            llm.eval([token])
        rows = np.array(llm.scores[len(prompt) - 1 : len(prompt) - 1 + len(reply)], np.float64)
    finally:
        llm.close()
    top = rows.max(axis=1, keepdims=True)
    return rows - top - np.log(np.exp(rows - top).sum(axis=1, keepdims=True))


@pytest.fixture(scope="module")
def greedy_reply(starter_model: Path) -> tuple[list[int], list[TokenRecord]]:
    return generate(starter_model, top_n=20)


def test_each_tokens_logprob_and_top_n_match_the_reference(
    greedy_reply: tuple[list[int], list[TokenRecord]], starter_model: Path
) -> None:
    prompt, records = greedy_reply
    assert len(records) > 10
    reference = reference_logprobs(starter_model, prompt, [r.token_id for r in records])
    for k, record in enumerate(records):
        row = reference[k]
        assert abs(record.logprob - row[record.token_id]) < TOLERANCE, k
        assert len(record.top) == 20
        ids = [t.token_id for t in record.top]
        best = np.argsort(-row, kind="stable")
        # the same set as the reference's top 20 (ties at the edge may swap places)
        edge = row[best[19]]
        assert set(ids) >= {int(i) for i in best[:20] if row[i] > edge + TOLERANCE}, k
        assert all(row[i] >= edge - TOLERANCE for i in ids), k
        for alt in record.top:
            assert abs(alt.logprob - row[alt.token_id]) < TOLERANCE, (k, alt)
        assert record.top[0].token_id == record.token_id == int(best[0])  # greedy


def test_a_real_reply_packs_in_under_80_bytes_per_token_at_top_10(
    greedy_reply: tuple[list[int], list[TokenRecord]],
) -> None:
    _prompt, records = greedy_reply
    blob = pack(records, top_n=10)
    per_token = len(blob) / len(records)
    print(f"packed token data: {per_token:.1f} bytes per token ({len(records)} tokens, N=10)")
    assert per_token <= 80
    back = unpack(blob).records
    assert [r.token_id for r in back] == [r.token_id for r in records]
    assert [len(r.top) for r in back] == [10] * len(records)
