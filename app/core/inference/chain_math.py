"""llama.cpp's sampler chain re-run in numpy on one full row of logits, to the float.

This mirrors the chain `SamplerChain` builds (penalties, top-k, typical-p, top-p, min-p,
temperature, then dist or greedy) with llama.cpp's own arithmetic, as in the vendored
`src/llama-sampler.cpp`:

- every sampler works in float32; the sums llama.cpp accumulates one by one in float32
  (top-p's and typical-p's softmax, typical-p's entropy, top-p's running mass) are
  accumulated one by one here too (`np.cumsum`), in the order llama.cpp holds the
  candidates at that moment (token order, sorted, or typical order);
- the final softmax of the dist sampler sums in double, as llama.cpp does;
- top-k 0, top-p 1, typical-p 1, min-p 0 and temperature 1 are no-ops; temperature 0 (or
  less) replaces everything after the penalties with greedy (the first highest logit);
- the seed's pick follows the dist sampler: a `std::mt19937` seeded with the seed, one
  `uniform_real_distribution<double>` draw per token (libstdc++'s `generate_canonical`:
  two 32-bit outputs), then the first candidate whose running mass reaches draw * total.

One thing cannot be reproduced: llama.cpp sorts with `std::sort`/`std::partial_sort`,
which are not stable, so when candidates with exactly equal logits straddle a cut (top-k,
top-p, typical-p) which of them llama.cpp keeps is unspecified. Here the lower token id
wins such a tie. The set of surviving probabilities is the same either way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from app.core.inference.sampling import SamplingSettings

F32 = np.float32
IdArray = npt.NDArray[np.int64]
F32Array = npt.NDArray[np.float32]

PENALTIES, TOP_K, TYPICAL, TOP_P, MIN_P, GREEDY = (
    "penalties",
    "top-k",
    "typical-p",
    "top-p",
    "min-p",
    "temperature 0",
)
STAGES = (TOP_K, TYPICAL, TOP_P, MIN_P, GREEDY)
"""The samplers that can remove candidates, in chain order."""

_TOP_P_FIRST = 256  # llama.cpp's first guess at how many sorted candidates top-p needs


@dataclass
class ChainOutcome:
    """What the chain leaves: the survivors in llama.cpp's order and their probabilities.

    `probs` are the dist sampler's float32 probabilities (all 1 for greedy), `logits` the
    survivors' logits after penalties and temperature. `stage_alive` maps each sampler
    that ran to a boolean mask (over the watched ids) of those still in after it.
    """

    ids: IdArray
    probs: F32Array
    logits: F32Array
    greedy: bool
    penalized: IdArray
    stage_alive: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)


def apply_penalties(
    logits: F32Array, settings: SamplingSettings, history: Sequence[int], window: int
) -> tuple[F32Array, IdArray]:
    """A copy of `logits` with llama.cpp's repeat/frequency/presence penalties applied.

    Returns the new row and the ids it changed.
    """
    row = logits.copy()
    if window <= 0 or not history:
        return row, np.empty(0, dtype=np.int64)
    counts = Counter(int(t) for t in history[-window:] if 0 <= int(t) < row.shape[0])
    if not counts:
        return row, np.empty(0, dtype=np.int64)
    ids = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    count = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
    rep = F32(settings.repeat_penalty)
    values = row[ids]
    values = np.where(values <= 0, values * rep, values / rep).astype(F32)
    shift = (count * F32(settings.frequency_penalty) + F32(settings.presence_penalty)).astype(F32)
    row[ids] = values - shift
    return row, ids


def _desc_keys(ids: IdArray, lg: F32Array) -> npt.NDArray[np.uint64]:
    """Unique uint64 keys that sort as (logit descending, token id ascending)."""
    bits = (-lg + F32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0
    flip = (np.uint32(0) - (bits >> np.uint32(31))) | np.uint32(0x80000000)
    key = (bits ^ flip).astype(np.uint64) << np.uint64(32)
    key |= ids.astype(np.uint64)
    return key


def _order_desc(ids: IdArray, lg: F32Array) -> npt.NDArray[np.intp]:
    """Positions that sort candidates by logit, highest first; equal logits: lower id first."""
    if ids.shape[0] < 2:
        return np.arange(ids.shape[0])
    keys = _desc_keys(ids, lg)
    if ids.shape[0] <= 4096:
        return np.argsort(keys)
    # A sort of the unique keys is much faster than an argsort; the low 32 bits give the
    # id back, and a lookup gives its position.
    ordered_ids = (np.sort(keys) & np.uint64(0xFFFFFFFF)).astype(np.int64)
    where = np.empty(int(ids.max()) + 1, dtype=np.intp)
    where[ids] = np.arange(ids.shape[0])
    return where[ordered_ids]


def _stable_order(values: F32Array) -> npt.NDArray[np.intp]:
    """A stable ascending argsort of non-negative float32 values (NaN last), done as one
    sort of unique uint64 keys (numpy's stable argsort is many times slower)."""
    n = values.shape[0]
    if n <= 4096:
        return np.argsort(values, kind="stable")
    bits = np.where(np.isnan(values), np.float32(np.inf), values).view(np.uint32)
    keys = bits.astype(np.uint64) << np.uint64(32)
    keys |= np.arange(n, dtype=np.uint64)
    return (np.sort(keys) & np.uint64(0xFFFFFFFF)).astype(np.intp)


def _top_positions(ids: IdArray, lg: F32Array, k: int) -> npt.NDArray[np.intp]:
    """Positions of the k best candidates, sorted (ties at the cut: lower ids)."""
    n = lg.shape[0]
    if k >= n:
        return _order_desc(ids, lg)
    part = np.argpartition(lg, n - k)[n - k :]
    kth = lg[part].min()
    above = np.flatnonzero(lg > kth)
    equal = np.flatnonzero(lg == kth)
    if above.size + equal.size > k:
        equal = equal[np.argsort(ids[equal], kind="stable")][: k - above.size]
    chosen = np.concatenate([above, equal])
    return chosen[_order_desc(ids[chosen], lg[chosen])]


def _exp32(x: F32Array) -> F32Array:
    """expf, correctly rounded like glibc's (numpy's float32 exp is up to 1 ulp off)."""
    return np.exp(x.astype(np.float64)).astype(F32)


def _log32(x: F32Array) -> F32Array:
    """logf, correctly rounded like glibc's."""
    return np.log(x.astype(np.float64)).astype(F32)


def _seq_sum(values: F32Array) -> F32:
    """Sum float32 values one by one, left to right, in float32 (as a C loop does)."""
    if values.size == 0:
        return F32(0.0)
    return F32(np.cumsum(values, dtype=F32)[-1])


class _State:
    """llama.cpp's `llama_token_data_array` while the chain runs: order, logits, sorted."""

    def __init__(self, ids: IdArray, lg: F32Array) -> None:
        self.ids = ids
        self.lg = lg
        self.sorted = False

    def take(self, positions: npt.NDArray[np.intp], *, sorted_: bool) -> None:
        self.ids = self.ids[positions]
        self.lg = self.lg[positions]
        self.sorted = sorted_

    def softmax_unsorted(self) -> F32Array:
        """`llama_sampler_softmax_impl(cur_p, false)`: float32, summed in current order."""
        e = _exp32(self.lg - self.lg.max())
        return (e / _seq_sum(e)).astype(F32)


def _top_k(state: _State, k: int) -> None:
    k = min(k, state.ids.shape[0])
    state.take(_top_positions(state.ids, state.lg, k), sorted_=True)


def _typical(state: _State, p: float) -> None:
    if not state.sorted:
        state.take(_order_desc(state.ids, state.lg), sorted_=True)
    e = _exp32(state.lg - state.lg[0])
    probs = (e / _seq_sum(e)).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = _log32(probs)
        entropy = _seq_sum((-probs * logp).astype(F32))
        shifted = np.abs(-logp - entropy).astype(F32)
    order = _stable_order(shifted)
    cum = np.cumsum(probs[order], dtype=F32)
    hits = np.flatnonzero(cum > F32(p))
    last = int(hits[0]) + 1 if hits.size else order.size
    state.take(order[:last], sorted_=False)


def _top_p(state: _State, p: float) -> None:
    probs = state.softmax_unsorted()
    target = F32(p)
    n = probs.shape[0]
    if state.sorted:
        order: npt.NDArray[np.intp] = np.arange(n)
        cum = np.cumsum(probs, dtype=F32)
    else:
        m = min(_TOP_P_FIRST, n)
        while True:
            order = _top_positions(state.ids, state.lg, m)
            cum = np.cumsum(probs[order], dtype=F32)
            if m >= n or cum[-1] >= target:
                break
            m = n if m * 16 >= n else m * 16
    hits = np.flatnonzero(cum >= target)
    last = int(hits[0]) + 1 if hits.size else n
    state.take(order[:last], sorted_=True)


def _min_p(state: _State, p: float) -> None:
    floor = F32(state.lg.max() + _log32(np.array([p], dtype=F32))[0])
    keep = np.flatnonzero(state.lg >= floor)
    state.take(keep, sorted_=state.sorted)


def _dist_probs(state: _State) -> tuple[F32Array, npt.NDArray[np.float64]]:
    """The dist sampler's probabilities and its running double mass (for the pick)."""
    if state.lg.shape[0] == 1:
        return np.ones(1, dtype=F32), np.ones(1)
    e = _exp32(state.lg - state.lg.max()).astype(np.float64)
    running = np.cumsum(e)
    return (e / running[-1]).astype(F32), running


def run_chain(
    logits: F32Array,
    settings: SamplingSettings,
    history: Sequence[int] = (),
    *,
    n_ctx: int = 0,
    watch: IdArray | None = None,
) -> ChainOutcome:
    """Apply the chain `SamplerChain` would build for `settings` to one logits row.

    Args:
        logits: The whole vocabulary's logits (float32).
        settings: The sampler settings (mirostat is not handled: check before calling).
        history: Recent tokens (prompt and reply so far), oldest first, for the penalties.
        n_ctx: The context size (the penalty window when repeat_last_n is -1).
        watch: Token ids whose fate per sampler is reported in `stage_alive`.
    """
    row = np.ascontiguousarray(logits, dtype=F32)
    n = row.shape[0]
    watched = watch if watch is not None else np.empty(0, dtype=np.int64)
    window = settings.penalty_window(n_ctx)
    row, penalized = apply_penalties(row, settings, history, window)
    state = _State(np.arange(n, dtype=np.int64), row)
    stage_alive: dict[str, npt.NDArray[np.bool_]] = {}
    removed: dict[str, int] = {}
    mask = np.zeros(n, dtype=bool)

    def note(stage: str, before: int) -> None:
        removed[stage] = before - state.ids.shape[0]
        mask[:] = False
        mask[state.ids] = True
        stage_alive[stage] = mask[watched]

    if settings.is_greedy:
        best = int(np.argmax(row))
        state.take(np.array([best]), sorted_=True)
        note(GREEDY, n)
        one = np.ones(1, dtype=F32)
        return ChainOutcome(state.ids, one, state.lg, True, penalized, stage_alive, removed)

    s = settings
    if s.top_k > 0:
        size = state.ids.shape[0]
        _top_k(state, s.top_k)
        note(TOP_K, size)
    if s.typical_p < 1.0:
        size = state.ids.shape[0]
        _typical(state, s.typical_p)
        note(TYPICAL, size)
    if s.top_p < 1.0:
        size = state.ids.shape[0]
        _top_p(state, s.top_p)
        note(TOP_P, size)
    if s.min_p > 0.0:
        size = state.ids.shape[0]
        _min_p(state, s.min_p)
        note(MIN_P, size)
    if s.temperature != 1.0:
        state.lg = (state.lg / F32(s.temperature)).astype(F32)
    probs, _ = _dist_probs(state)
    return ChainOutcome(state.ids, probs, state.lg, False, penalized, stage_alive, removed)


def seeded_pick(outcome: ChainOutcome, seed: int, draws_before: int = 0) -> int:
    """The token llama.cpp's dist sampler picks from `outcome` with this seed.

    `draws_before` is how many tokens the same chain sampled before this one (each token
    takes one draw). Greedy outcomes return their single survivor.
    """
    if outcome.greedy or outcome.ids.shape[0] == 1:
        return int(outcome.ids[0])
    e = _exp32(outcome.logits - outcome.logits.max()).astype(np.float64)
    running = np.cumsum(e)
    target = running[-1] * canonical_draw(seed, draws_before)
    index = int(np.searchsorted(running, target, side="left"))
    return int(outcome.ids[min(index, running.shape[0] - 1)])


@lru_cache(maxsize=16)
def _mt19937_key(seed: int) -> npt.NDArray[np.uint32]:
    """The state `std::mt19937(seed)` starts from (the standard's init_genrand)."""
    key = np.empty(624, dtype=np.uint32)
    x = seed & 0xFFFFFFFF
    key[0] = x
    for i in range(1, 624):
        x = (1812433253 * (x ^ (x >> 30)) + i) & 0xFFFFFFFF
        key[i] = x
    key.flags.writeable = False
    return key


def canonical_draw(seed: int, index: int = 0) -> float:
    """Draw number `index` of `uniform_real_distribution<double>(0, 1)` on `mt19937(seed)`.

    libstdc++'s `generate_canonical<double, 53>` combines two 32-bit outputs a, b as
    (a + b * 2**32) / 2**64 (and never returns 1).
    """
    generator = np.random.MT19937()
    generator.state = {
        "bit_generator": "MT19937",
        "state": {"key": _mt19937_key(seed).copy(), "pos": 624},
    }
    raw = generator.random_raw(2 * (index + 1))
    a, b = float(raw[-2]), float(raw[-1])
    value = (a + b * 4294967296.0) / 18446744073709551616.0
    return value if value < 1.0 else float(np.nextafter(1.0, 0.0))
