"""The context's last row of logits as a numpy view, made once per buffer."""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt


class LogitsRow:
    """`llama_get_logits_ith(ctx, -1)` as an array, without rebuilding the view each token.

    `np.ctypeslib.as_array` costs about 90 µs a call (measured in the decode loop); the
    buffer llama.cpp writes the logits into only moves when it grows, so the view is kept
    while the address stays the same.
    """

    def __init__(self, n_vocab: int) -> None:
        self._n_vocab = n_vocab
        self._address: int | None = None
        self._view: npt.NDArray[np.float32] | None = None

    def last(self, ctx: Any) -> npt.NDArray[np.float32]:
        """A view of the logits llama.cpp computed for the last token it read."""
        pointer = llama_cpp.llama_get_logits_ith(ctx, -1)
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        if address != self._address or self._view is None:
            self._view = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
            self._address = address
        return self._view
