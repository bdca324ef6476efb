"""A Hub repo's model card: its README.md, fetched only when a person asks to read it.

The card is Markdown with an optional YAML header (licence, tags, base model); the header
is dropped, and a very long card is cut (a card is read, not archived).
"""

from __future__ import annotations

from huggingface_hub import get_session, hf_hub_url, hf_raise_for_status
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.utils._headers import build_hf_headers

from app.core.models.hub import HubClient, hub_errors

CARD_LIMIT = 200_000
"""Characters of a card kept; a longer one is cut with a note."""
_TIMEOUT_S = 30.0


def strip_front_matter(text: str) -> str:
    """The Markdown of a card without its leading `---` YAML block."""
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return text
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "".join(lines[index + 1 :]).lstrip("\n")
    return text


def fetch_model_card(client: HubClient, repo_id: str, revision: str = "main") -> str:
    """The repo's README.md as Markdown ("" when the repo has none). Blocks: run it on a job.

    Raises:
        HubError: The Hub is unreachable, the repo is unknown or gated, or the token is
            refused (the messages of `hub_errors`).
    """
    url = hf_hub_url(repo_id, "README.md", revision=revision, endpoint=client.endpoint)
    with hub_errors(client.endpoint, repo_id=repo_id, filename="README.md", revision=revision):
        response = get_session().get(
            url,
            headers=build_hf_headers(token=client.token),
            timeout=_TIMEOUT_S,
            follow_redirects=True,
        )
        try:
            hf_raise_for_status(response)
        except EntryNotFoundError:
            return ""
    text = strip_front_matter(response.text)
    if len(text) > CARD_LIMIT:
        text = text[:CARD_LIMIT] + "\n\n*(The card is longer; read the rest on the Hub.)*\n"
    return text
