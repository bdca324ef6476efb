"""`hearth next` and `hearth ask --show-prompt` as a person runs them (real model)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_chat_commands import hearth

BASE = ["--threads", "2", "--ctx", "1024"]
KEYS = [
    "version", "model", "position", "prompt_tokens", "vocabulary", "settings",
    "entropy_before_bits", "entropy_after_bits", "survivors", "mass_kept", "pick",
    "removed", "candidates", "rest", "note",
]  # fmt: skip


def test_next_json_is_stable_and_agrees_with_a_greedy_reply(
    starter_model: Path, tmp_path: Path
) -> None:
    model = ["--model", str(starter_model), *BASE]
    result = hearth("next", *model, "--json", "--top", "8", "--top-p", "0.5", "Name a fruit.",
                    home=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert list(record) == KEYS and record["version"] == 1
    assert len(record["candidates"]) >= 8
    assert record["survivors"] >= 1 and 0 < record["mass_kept"] <= 1
    assert record["entropy_after_bits"] <= record["entropy_before_bits"]
    cut = {c["cut_by"] for c in record["candidates"]}
    assert cut <= {None, "top-k", "top-p", "min-p"} and None in cut
    befores = [c["before"] for c in record["candidates"]]
    assert befores == sorted(befores, reverse=True)

    greedy = hearth("next", *model, "--json", "--temperature", "0", "Name a fruit.",
                    home=tmp_path)  # fmt: skip
    pick = json.loads(greedy.stdout)["pick"]
    assert pick["rule"] == "greedy"
    reply = hearth("ask", *model, "--temperature", "0", "--max-tokens", "1", "Name a fruit.",
                   home=tmp_path)  # fmt: skip
    assert reply.stdout.strip() == pick["text"].strip()


def test_next_table_and_bad_flags(starter_model: Path, tmp_path: Path) -> None:
    result = hearth("next", "--model", str(starter_model), *BASE, "--seed", "3", "Hello",
                    home=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "entropy" in result.stdout and "the seed picks" in result.stdout
    bad = hearth("next", "--model", str(starter_model), "--top", "0", "Hi", home=tmp_path)
    assert bad.returncode == 2 and "--top" in bad.stderr and "Traceback" not in bad.stderr


def test_ask_show_prompt_prints_the_parts_to_stderr(starter_model: Path, tmp_path: Path) -> None:
    result = hearth("ask", "--model", str(starter_model), *BASE, "--temperature", "0",
                    "--max-tokens", "4", "--show-prompt", "--system", "Be kind.", "Hi there",
                    home=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "--- system prompt (message 1)" in err and "--- user (message 2)" in err
    assert "<|im_start|>" in err and "Hi there" in err
    counts = [int(line.split(": ")[1].split()[0].replace(",", ""))
              for line in err.splitlines() if line.startswith("--- ") and ": " in line]  # fmt: skip
    total = int(err.split("prompt tokens")[0].rsplit("--- ", 1)[1].replace(",", ""))
    assert sum(counts) == total
