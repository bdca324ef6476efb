"""Hub search, repo listing, tokens and the catalog: the real huggingface_hub client against
the fake Hub in tests/fake_hub.py."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

from app.core.models.hub import (
    HubClient,
    HubError,
    HubFile,
    HubOfflineError,
    RepoNotFoundError,
    fit_badge,
    group_quant_options,
    memory_for_file,
    quant_of,
    save_token,
    stored_token,
)
from tests.fake_hub import FakeHub, serving_hub

GB = 1_000_000_000


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    yield from serving_hub(monkeypatch, tmp_path)


def populate_search(hub: FakeHub) -> None:
    hub.add_repo(
        "alice/Alpha-GGUF",
        downloads=500,
        likes=5,
        trending=1,
        last_modified="2024-03-01T00:00:00.000Z",
        gguf={"total": 1_500_000_000, "architecture": "qwen2", "context_length": 32768},
        card_data={"license": "apache-2.0"},
    )
    hub.add_repo(
        "bob/Beta-GGUF",
        downloads=100,
        likes=50,
        trending=3,
        last_modified="2024-01-01T00:00:00.000Z",
        tags=["gguf", "license:mit"],
        safetensors={"parameters": {"BF16": 3_000_000_000}, "total": 3_000_000_000},
        config={"model_type": "llama"},
        gated="manual",
    )
    hub.add_repo(
        "carol/Gamma-gguf",
        downloads=10,
        likes=20,
        trending=9,
        last_modified="2024-06-01T00:00:00.000Z",
    )
    hub.add_repo("dave/Alpha-safetensors", downloads=9999, tags=["safetensors"])


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("downloads", ["alice/Alpha-GGUF", "bob/Beta-GGUF", "carol/Gamma-gguf"]),
        ("likes", ["bob/Beta-GGUF", "carol/Gamma-gguf", "alice/Alpha-GGUF"]),
        ("trending", ["carol/Gamma-gguf", "bob/Beta-GGUF", "alice/Alpha-GGUF"]),
        ("recent", ["carol/Gamma-gguf", "alice/Alpha-GGUF", "bob/Beta-GGUF"]),
    ],
)
def test_search_lists_gguf_repos_in_the_asked_order(
    hub: FakeHub, sort: str, expected: list[str]
) -> None:
    populate_search(hub)
    found = HubClient(hub.url).search("", sort=sort)
    assert [m.repo_id for m in found] == expected


def test_search_matches_the_query_and_reports_what_the_hub_knows(hub: FakeHub) -> None:
    populate_search(hub)
    client = HubClient(hub.url)
    (alpha,) = client.search("alpha")  # the safetensors-only "Alpha" repo is filtered out
    assert alpha.repo_id == "alice/Alpha-GGUF"
    assert alpha.author == "alice"
    assert (alpha.downloads, alpha.likes) == (500, 5)
    assert alpha.n_params == 1_500_000_000
    assert alpha.architecture == "qwen2"
    assert alpha.licence == "apache-2.0"
    assert alpha.gated is False
    assert alpha.last_modified is not None and alpha.last_modified.startswith("2024-03-01")
    assert alpha.pipeline_tag == "text-generation"

    (beta,) = client.search("BETA")
    assert beta.n_params == 3_000_000_000  # from safetensors.total
    assert beta.architecture == "llama"  # from config.model_type
    assert beta.licence == "mit"  # from the license: tag
    assert beta.gated == "manual"

    (gamma,) = client.search("gamma")
    assert (gamma.n_params, gamma.architecture, gamma.licence) == (0, "", None)
    assert len(client.search("", limit=2)) == 2
    # the fields came from the Hub because search asked for them with expand=
    assert all(r.status == 200 for r in hub.requests if r.path == "/api/models")


def test_search_rejects_an_unknown_sort(hub: FakeHub) -> None:
    with pytest.raises(HubError, match="Unknown sort 'stars'"):
        HubClient(hub.url).search("x", sort="stars")


def sample_repo_files(hub: FakeHub, *, with_q4km: bool = True) -> None:
    repo = hub.add_repo("alice/Tiny-GGUF")
    if with_q4km:
        repo.add("Tiny-Q4_K_M.gguf", b"m" * 4000)
    repo.add("Tiny-IQ4_XS.gguf", b"i" * 3500)
    repo.add("Tiny-Q8_0.gguf", b"8" * 7000)
    repo.add("tiny.F16.gguf", b"f" * 12000)
    repo.add("BF16/Tiny-BF16-00002-of-00002.gguf", b"b" * 5000)
    repo.add("BF16/Tiny-BF16-00001-of-00002.gguf", b"a" * 6000)
    repo.add("Q5_K_S/tiny-00001-of-00001.gguf", b"5" * 4500)
    repo.add("mmproj-Tiny-f16.gguf", b"p" * 100)
    repo.add("README.md", b"# Tiny", lfs=False)


def test_repo_files_groups_by_quant_with_sizes_checksums_and_the_commit(hub: FakeHub) -> None:
    sample_repo_files(hub)
    repo = HubClient(hub.url).repo_files("alice/Tiny-GGUF")
    served = hub.repos["alice/Tiny-GGUF"]
    assert repo.repo_id == "alice/Tiny-GGUF"
    assert repo.revision == served.sha
    assert [(o.quant, o.size_bytes, o.is_split, o.is_projector) for o in repo.options] == [
        ("IQ4_XS", 3500, False, False),
        ("Q4_K_M", 4000, False, False),
        ("Q5_K_S", 4500, True, False),
        ("Q8_0", 7000, False, False),
        ("BF16", 11000, True, False),
        ("F16", 12000, False, False),
        ("F16", 100, False, True),
    ]
    bf16 = repo.option("bf16")
    assert bf16 is not None
    assert [f.path for f in bf16.files] == [
        "BF16/Tiny-BF16-00001-of-00002.gguf",
        "BF16/Tiny-BF16-00002-of-00002.gguf",
    ]
    assert bf16.files[0].sha256 == served.files[bf16.files[0].path].sha256
    assert bf16.label == "BF16 · 10.7 KiB · 2 parts"
    assert repo.options[-1].label == "F16 · 100 B · vision projector"
    recommended = repo.recommended()
    assert recommended is not None and recommended.quant == "Q4_K_M"
    assert all(not f.path.endswith(".md") for o in repo.options for f in o.files)


def test_recommended_falls_back_to_another_q4_then_the_first_model() -> None:
    def files(*names: str) -> tuple[HubFile, ...]:
        return tuple(HubFile(name, 1000 + i, None) for i, name in enumerate(names))

    options = group_quant_options(files("m-Q8_0.gguf", "m-IQ4_XS.gguf", "mmproj-m-Q4_K_M.gguf"))
    from app.core.models.hub import RepoFiles

    repo = RepoFiles("a/b", "sha", options)
    assert repo.recommended() is not None
    assert repo.recommended().quant == "IQ4_XS"  # type: ignore[union-attr]
    only_big = RepoFiles("a/b", "sha", group_quant_options(files("mmproj-x.gguf", "m-F16.gguf")))
    assert only_big.recommended().quant == "F16"  # type: ignore[union-attr]
    assert (
        RepoFiles("a/b", "sha", group_quant_options(files("mmproj-x.gguf"))).recommended() is None
    )


@pytest.mark.parametrize(
    ("path", "quant"),
    [
        ("Llama-3.2-3B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-1.5b-instruct-q5_k_s.gguf", "Q5_K_S"),
        ("model.Q8_0.gguf", "Q8_0"),
        ("model-IQ4_XS.gguf", "IQ4_XS"),
        ("model-iq2_xxs.gguf", "IQ2_XXS"),
        ("model-f16.gguf", "F16"),
        ("model-BF16.gguf", "BF16"),
        ("model-fp32.gguf", "F32"),
        ("Model-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("Q6_K/model-00001-of-00003.gguf", "Q6_K"),
        ("model-Q4_0.gguf", "Q4_0"),
        ("model-Q3_K_L.gguf", "Q3_K_L"),
        ("model.gguf", "unknown"),
        ("phi-3.5-mini.gguf", "unknown"),
    ],
)
def test_quant_is_read_from_file_and_folder_names(path: str, quant: str) -> None:
    assert quant_of(path) == quant


def test_fit_badge_uses_the_library_thresholds() -> None:
    ram = 10 * GB
    assert memory_for_file(GB) == int(1.1 * GB) + 300_000_000
    assert fit_badge(5 * GB, ram) == "fits"  # 5.8 GB of 10
    assert fit_badge(8 * GB, ram) == "tight"  # 9.1 GB of 10
    assert fit_badge(9 * GB, ram) == "too_big"  # 10.2 GB of 10
    assert fit_badge(9 * GB, ram, [4 * GB]) == "fits"  # free VRAM counts
    assert fit_badge(GB, 0) == "unknown"


def test_a_missing_repo_is_reported_clearly(hub: FakeHub) -> None:
    with pytest.raises(RepoNotFoundError, match=r"No model repo 'nobody/Nothing-GGUF'"):
        HubClient(hub.url).repo_files("nobody/Nothing-GGUF")
    sample_repo_files(hub)
    with pytest.raises(RepoNotFoundError, match="has no revision 'v9'"):
        HubClient(hub.url).repo_files("alice/Tiny-GGUF", revision="v9")
    with pytest.raises(HubError, match="not a valid repo name"):
        HubClient(hub.url).repo_files("not a repo")


def test_a_gated_repo_lists_its_files_and_says_it_is_gated(hub: FakeHub) -> None:
    repo = hub.add_repo("meta/Gated-GGUF", gated="auto")
    repo.add("Gated-Q4_K_M.gguf", b"g" * 1000)
    listed = HubClient(hub.url).repo_files("meta/Gated-GGUF")
    assert listed.gated == "auto"
    assert listed.recommended() is not None


def test_no_server_is_offline_at_once(hub: FakeHub) -> None:
    url = hub.url
    hub.stop()
    client = HubClient(url)
    started = time.monotonic()
    with pytest.raises(HubOfflineError, match="Cannot reach the Hugging Face Hub"):
        client.search("llama")
    with pytest.raises(HubOfflineError):
        client.repo_files("alice/Tiny-GGUF")
    assert time.monotonic() - started < 5  # no retry back-off


def test_offline_mode_is_explained(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE"):
        HubClient(hub.url).search("llama")
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE"):
        HubClient(hub.url).repo_files("alice/Tiny-GGUF")


def test_a_server_error_is_a_hub_error(hub: FakeHub) -> None:
    hub.faults.fail_status = 500
    with pytest.raises(HubError, match="answered 500"):
        HubClient(hub.url).repo_files("alice/Tiny-GGUF")


def test_a_saved_token_is_where_huggingface_hub_reads_it(hub: FakeHub) -> None:
    assert stored_token() is None
    save_token("  hf_secret123\n")
    path = Path(constants.HF_TOKEN_PATH)
    assert path.read_text(encoding="utf-8") == "hf_secret123"
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored_token() == "hf_secret123"
    with pytest.raises(HubError, match="not an access token"):
        save_token("two words")
