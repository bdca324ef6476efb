"""The GGUF fuzz corpus (`tests/gguf_fuzz.py`): hundreds of broken files, and not one takes
the test process down, hangs, or gives anything but a `HearthError`.

Every mutant goes through the header reader, then through `checked_options`, which loads each
file the header accepts in a child process (about 130 of them, well under a minute on two
busy cores). A run of this module prints how many files ended in each outcome class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.errors import HearthError, ModelLoadError
from app.core.gguf_file import read_gguf_info
from app.core.inference.load_options import LoadOptions
from app.core.inference.load_probe import checked_options
from app.core.machine.load_verdicts import LoadVerdicts
from tests.gguf_fuzz import Mutant, corpus

CPU = LoadOptions(n_ctx=256, n_gpu_layers=0, n_threads=1)
CORPUS = corpus()

REFUSED_BY_HEADER = "refused by header"
REFUSED_BY_LLAMA = "refused by llama.cpp"
CRASHED = "crashed in the child"
LOADED = "loaded"
LOADED_WITH_WARNINGS = "loaded, with warnings"

EXPECTED: dict[str, tuple[str, str]] = {
    # name: (outcome, a phrase the error or a warning must hold)
    "value/block_count=0": (REFUSED_BY_HEADER, "llama.block_count = 0"),
    "value/block_count=4294967295": (REFUSED_BY_HEADER, "llama.block_count = 4294967295"),
    "value/per_layer/head_count_kv=[2,0]": (REFUSED_BY_HEADER, "head_count_kv"),
    "value/per_layer/head_count=[4,0]": (LOADED_WITH_WARNINGS, "head_count = 0 for layer 1"),
    "value/rope.freq_base=0.0": (LOADED_WITH_WARNINGS, "llama.rope.freq_base = 0.0"),
    "value/rope.freq_base=-1.0": (LOADED_WITH_WARNINGS, "NaN or infinite"),
    "value/rope.freq_base=nan": (LOADED_WITH_WARNINGS, "llama.rope.freq_base = nan"),
    "value/bos_token_id=264": (LOADED_WITH_WARNINGS, "bos_token_id = 264"),
    "value/eos_token_id=264": (LOADED_WITH_WARNINGS, "eos_token_id = 264"),
    "value/eos_token_id=4294967295": (LOADED, ""),
    "value/weights/output=nan": (LOADED_WITH_WARNINGS, "NaN or infinite"),
    "value/weights/f16_token_embd=inf": (LOADED_WITH_WARNINGS, "NaN or infinite"),
    "value/tensor_as_i32/token_embd": (CRASHED, "GGML_ASSERT"),
    "value/tensor_as_i32/attn_q": (CRASHED, "segmentation fault"),
    "value/tokenizer_model=llama": (CRASHED, "unordered_map"),
    "value/tokens=short": (REFUSED_BY_LLAMA, ""),
    "value/head_count=0": (REFUSED_BY_LLAMA, ""),
    "header/version=2": (LOADED, ""),
    "header/alignment=64": (LOADED, ""),
    "header/tensor_type/blk.0.attn_q.weight=I32": (CRASHED, "segmentation fault"),
    "header/missing_key/tokenizer.ggml.tokens": (REFUSED_BY_LLAMA, ""),
}


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[dict[str, Counter[str]]]:
    """Outcome classes counted over the module; printed at its end."""
    counts: dict[str, Counter[str]] = {"header": Counter(), "probe": Counter()}
    yield counts
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for level, title in (("header", "header reader"), ("probe", "header, then the load probe")):
            if counts[level]:
                total = sum(counts[level].values())
                classes = ", ".join(f"{name}: {n}" for name, n in sorted(counts[level].items()))
                reporter.write_line(f"GGUF fuzz corpus, {title}: {total} files; {classes}")


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> LoadVerdicts:
    """A verdict cache of the module's own: every probed file is really tried."""
    return LoadVerdicts(tmp_path_factory.mktemp("verdicts"))


def test_the_corpus_is_hundreds_of_files_of_both_kinds() -> None:
    levels = Counter(m.level for m in CORPUS)
    assert levels["header"] >= 250 and levels["value"] >= 60
    assert set(EXPECTED) <= {m.name for m in CORPUS}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("mutant", CORPUS, ids=lambda m: m.name)
def test_the_header_reader_accepts_or_explains(
    mutant: Mutant, tmp_path: Path, tally: dict[str, Counter[str]]
) -> None:
    path = mutant.write(tmp_path)
    try:
        info = read_gguf_info(path)
    except HearthError as exc:
        assert path.name in exc.message, exc.message  # names the file
        assert exc.message.isprintable(), exc.message  # one line, no raw bytes
        tally["header"][REFUSED_BY_HEADER] += 1
    else:
        assert info.path == path
        tally["header"]["accepted"] += 1


def probe_outcome(path: Path, verdicts: LoadVerdicts) -> tuple[str, str]:
    """The outcome class of one file, with the message or the warnings it gave."""
    try:
        read_gguf_info(path)
    except HearthError as exc:
        return REFUSED_BY_HEADER, exc.message
    try:
        _, warnings = checked_options(path, CPU, verdicts)
    except ModelLoadError as exc:  # anything else fails the test
        verdict = verdicts.for_file(path)
        assert verdict is not None and verdict.status == "crashed"
        assert path.name in exc.message and "\n" not in exc.message
        return CRASHED, exc.message
    verdict = verdicts.for_file(path)
    assert verdict is not None, "the probe timed out"
    if verdict.status == "refused":
        return REFUSED_BY_LLAMA, verdict.reason
    assert verdict.status == "ok"
    return (LOADED_WITH_WARNINGS if warnings else LOADED), " ".join(warnings)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mutant", CORPUS, ids=lambda m: m.name)
def test_llama_cpp_loads_or_refuses_each_file_and_the_process_lives(
    mutant: Mutant, tmp_path: Path, verdicts: LoadVerdicts, tally: dict[str, Counter[str]]
) -> None:
    outcome, said = probe_outcome(mutant.write(tmp_path), verdicts)
    tally["probe"][outcome] += 1
    if mutant.name in EXPECTED:
        expected, phrase = EXPECTED[mutant.name]
        assert outcome == expected, said
        assert phrase in said
