"""Model cards: the real huggingface_hub session against the fake Hub on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.models.hub import GatedRepoError, HubClient, HubOfflineError, RepoNotFoundError
from app.core.models.model_card import CARD_LIMIT, fetch_model_card, strip_front_matter
from tests.fake_hub import FakeHub, serving_hub

CARD = "---\nlicense: apache-2.0\ntags:\n- gguf\n---\n\n# Tiny\n\nA **tiny** model.\n"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    yield from serving_hub(monkeypatch, tmp_path)


def test_the_card_comes_without_its_yaml_header(hub: FakeHub) -> None:
    hub.add_repo("alice/Tiny-GGUF").set_card(CARD)
    card = fetch_model_card(HubClient(endpoint=hub.url), "alice/Tiny-GGUF")
    assert card == "# Tiny\n\nA **tiny** model.\n"
    assert [r.path for r in hub.requests if "README" in r.path] == [
        "/alice/Tiny-GGUF/resolve/main/README.md"
    ]


def test_a_repo_without_a_card_gives_an_empty_one(hub: FakeHub) -> None:
    hub.add_repo("alice/Bare-GGUF")
    assert fetch_model_card(HubClient(endpoint=hub.url), "alice/Bare-GGUF") == ""


def test_failures_are_hub_errors(hub: FakeHub) -> None:
    hub.add_repo("meta/Gated-GGUF", gated="manual").set_card(CARD)
    client = HubClient(endpoint=hub.url)
    with pytest.raises(GatedRepoError):
        fetch_model_card(client, "meta/Gated-GGUF")
    with pytest.raises(RepoNotFoundError):
        fetch_model_card(client, "nobody/Nothing")
    with pytest.raises(HubOfflineError, match="Cannot reach"):
        fetch_model_card(HubClient(endpoint="http://127.0.0.1:9"), "alice/Tiny-GGUF")


def test_a_long_card_is_cut(hub: FakeHub) -> None:
    hub.add_repo("alice/Long-GGUF").set_card("x" * (CARD_LIMIT + 10))
    card = fetch_model_card(HubClient(endpoint=hub.url), "alice/Long-GGUF")
    assert card.startswith("x" * CARD_LIMIT) and card.endswith("read the rest on the Hub.)*\n")


def test_front_matter_is_only_a_leading_block() -> None:
    assert strip_front_matter("# Title\n---\nrule\n") == "# Title\n---\nrule\n"
    assert strip_front_matter("---\nunterminated") == "---\nunterminated"
