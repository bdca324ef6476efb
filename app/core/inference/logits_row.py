"""Rows of the context's logits as numpy views, each made once per buffer address."""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

_MAX_VIEWS = 4096
"""Views kept at most (one per output row of a batch); all are dropped past it."""


class LogitsRow:
    """`llama_get_logits_ith(ctx, index)` as an array, without rebuilding the view each token.

    `np.ctypeslib.as_array` costs about 90 µs a call (measured in the decode loop); the
    buffer llama.cpp writes the logits into only moves when it grows, so a view is kept
    per row address and reused while llama.cpp returns that address.
    """

    def __init__(self, n_vocab: int) -> None:
        self._n_vocab = n_vocab
        self._views: dict[int, npt.NDArray[np.float32]] = {}

    def at(self, ctx: Any, index: int = -1) -> npt.NDArray[np.float32]:
        """A view of the logits of batch position `index` (-1: the last token read)."""
        pointer = llama_cpp.llama_get_logits_ith(ctx, index)
        address = ctypes.cast(pointer, ctypes.c_void_p).value or 0
        view = self._views.get(address)
        if view is None:
            if len(self._views) >= _MAX_VIEWS:
                self._views.clear()
            view = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
            self._views[address] = view
        return view
