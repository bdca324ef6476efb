"""The "Discover" tab: Hearth's recommended models first, then a search of the Hugging Face
Hub for GGUF repos; a repo's files grouped by quantization with a fits / tight / too big
badge, the recommended file preselected, and a Download button that queues it. The detail
pane shows the selected model's facts, its memory math on this machine and its model card.

Nothing here touches the network until the person searches or picks a repo (the card
too). Gated repos explain themselves and take a token, stored where huggingface_hub keeps
it.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QSignalBlocker, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.machine.hardware import available_memory, gpu_free_memory
from app.core.models.catalog import CatalogEntry, load_catalog
from app.core.models.hub import (
    SORTS,
    GatedRepoError,
    HubClient,
    HubModel,
    QuantOption,
    RepoFiles,
    fit_badge,
    gated_message,
    save_token,
)
from app.core.models.model_card import fetch_model_card
from app.core.units import format_bytes, format_params
from app.ui.models.library_tab import FIT_TEXT, FIT_TIPS
from app.ui.models.model_details import FitFacts, ModelDetails
from app.ui.widgets import named
from app.workers.background import BackgroundJob, JobSet

log = logging.getLogger(__name__)

SORT_LABELS = {
    "downloads": "Most downloaded",
    "likes": "Most liked",
    "trending": "Trending",
    "recent": "Recently updated",
}
PRIVACY_NOTE = (
    "Searching and downloading contact the Hugging Face Hub (huggingface.co). Nothing else "
    "leaves this computer, and chats never do."
)
_DATA_ROLE = Qt.ItemDataRole.UserRole
RESULT_COLUMNS = ("Model", "Parameters", "Architecture", "Licence", "Downloads", "Likes")
HUB_ONLY_COLUMNS = (4, 5)
"""Downloads and Likes: the Hub's numbers, which catalog entries do not have."""


@dataclass(frozen=True)
class RepoListing:
    """A repo's files with this machine's fit badge for each quant option."""

    repo: RepoFiles
    badges: tuple[str, ...]


@dataclass(frozen=True)
class GatedRepo:
    """A repo that needs its licence accepted and a token."""

    repo_id: str
    message: str


def machine_fit(size_bytes: int) -> str:
    """This machine's fit badge for a file of `size_bytes` (measures memory: run on a job)."""
    return fit_badge(size_bytes, available_memory(), gpu_free_memory())


def list_repo(client: HubClient, repo_id: str) -> RepoListing | GatedRepo:
    """A repo's files and fit badges (runs on a background job)."""
    try:
        repo = client.repo_files(repo_id)
    except GatedRepoError as exc:
        return GatedRepo(repo_id, exc.message)
    ram = available_memory()
    vram = gpu_free_memory()
    badges = tuple(fit_badge(option.size_bytes, ram, vram) for option in repo.options)
    return RepoListing(repo, badges)


class HubTab(QWidget):
    """Recommended models, Hub search, and a repo's downloadable files.

    Object names: hubQuery, hubSort, hubSearchButton, hubResults, hubFiles, hubStatusLabel,
    downloadButton, gatedBox, gatedLabel, tokenField, saveTokenButton, privacyNote,
    hubDetails (see ModelDetails).

    Signals:
        downloadRequested(object, object): Queue this (`RepoFiles`, `QuantOption`).
    """

    downloadRequested = Signal(object, object)

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._endpoint = endpoint
        self._token = token
        self._jobs = JobSet(self)
        self._listing: RepoListing | None = None
        self._wanted_file: str | None = None
        self._search_serial = 0
        self._repo_serial = 0
        self._parameters = 0  # of the model on show, for the memory math

        self._query = QLineEdit()
        named(self._query, "hubQuery", "Search the Hugging Face Hub")
        self._query.setPlaceholderText("Search GGUF models on the Hugging Face Hub (e.g. qwen)")
        self._query.setClearButtonEnabled(True)
        self._query.returnPressed.connect(self.search)
        self._sort = QComboBox()
        named(self._sort, "hubSort", "Sort results by")
        for key in SORTS:
            self._sort.addItem(SORT_LABELS.get(key, key), key)
        self._search_button = QPushButton("Search")
        named(self._search_button, "hubSearchButton", "Search")
        self._search_button.clicked.connect(self.search)
        row = QHBoxLayout()
        row.addWidget(self._query, 1)
        row.addWidget(self._sort)
        row.addWidget(self._search_button)

        self._results = QTreeWidget()
        named(self._results, "hubResults", "Models")
        self._results.setHeaderLabels(list(RESULT_COLUMNS))
        self._results.setRootIsDecorated(False)
        self._results.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self._results.header().setStretchLastSection(True)
        self._results.itemSelectionChanged.connect(self._on_result_selected)

        self._files = QTreeWidget()
        named(self._files, "hubFiles", "Files of this model")
        self._files.setHeaderLabels(["Quantization", "Size", "Parts", "This machine"])
        self._files.setRootIsDecorated(False)
        self._files.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self._files.itemSelectionChanged.connect(self._on_file_selected)
        self._files.itemDoubleClicked.connect(lambda *_: self.download_selected())
        self._repo_label = QLabel("Pick a model to see its files.")
        self._repo_label.setObjectName("hubRepoLabel")
        self._repo_label.setWordWrap(True)
        self._repo_label.setOpenExternalLinks(True)
        self._download = QPushButton("Download")
        named(self._download, "downloadButton", "Download the selected file")
        self._download.clicked.connect(self.download_selected)

        self._gated = QFrame()
        self._gated.setObjectName("gatedBox")
        self._gated.setFrameShape(QFrame.Shape.StyledPanel)
        self._gated_label = QLabel()
        named(self._gated_label, "gatedLabel", "Why this model needs a token")
        self._gated_label.setWordWrap(True)
        self._gated_label.setOpenExternalLinks(True)
        self._token_field = QLineEdit()
        named(self._token_field, "tokenField", "Hugging Face access token")
        self._token_field.setEchoMode(QLineEdit.EchoMode.Password)
        self._token_field.setPlaceholderText(
            "hf_… (a read token from huggingface.co/settings/tokens)"
        )
        self._save_token = QPushButton("Save token and retry")
        named(self._save_token, "saveTokenButton", "Save the token and try again")
        self._save_token.clicked.connect(self.save_token_and_retry)
        gated_box = QVBoxLayout(self._gated)
        gated_box.addWidget(self._gated_label)
        token_row = QHBoxLayout()
        token_row.addWidget(self._token_field, 1)
        token_row.addWidget(self._save_token)
        gated_box.addLayout(token_row)
        self._gated.hide()

        files_side = QWidget()
        files_box = QVBoxLayout(files_side)
        files_box.setContentsMargins(0, 0, 0, 0)
        files_box.addWidget(self._repo_label)
        files_box.addWidget(self._gated)
        files_box.addWidget(self._files, 1)
        files_box.addWidget(self._download, 0, Qt.AlignmentFlag.AlignRight)
        self.details = ModelDetails()
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(files_side)
        right.addWidget(self.details)
        right.setSizes([1000, 2000])  # scaled to the space the window gives
        splitter = QSplitter()
        splitter.addWidget(self._results)
        splitter.addWidget(right)
        splitter.setSizes([1100, 900])

        self._status = QLabel()
        named(self._status, "hubStatusLabel", "Search status")
        self._status.setWordWrap(True)
        privacy = QLabel(PRIVACY_NOTE)
        named(privacy, "privacyNote", "Privacy note")
        privacy.setWordWrap(True)
        privacy.setStyleSheet("color: palette(placeholder-text);")
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(splitter, 1)
        layout.addWidget(self._status)
        layout.addWidget(privacy)
        self.show_recommended()
        self._update_buttons()

    # ----- recommended -----

    def show_recommended(self) -> None:
        """List the curated catalog (no network)."""
        try:
            entries = load_catalog()
        except Exception as exc:  # a broken catalog must not break the window
            log.exception("cannot read the model catalog")
            self._status.setText(f"The list of recommended models could not be read: {exc}")
            entries = []
        self._clear_results()
        self._show_hub_columns(False)
        for entry in entries:
            name = f"★ {entry.name}" + ("" if entry.verified else "  (unverified)")
            params = format_params(entry.parameters)
            item = QTreeWidgetItem([name, params, entry.architecture, entry.licence, "", ""])
            item.setToolTip(0, entry.notes)
            item.setData(0, _DATA_ROLE, entry)
            self._results.addTopLevelItem(item)
        self._status.setText(
            "Recommended models for a start. Search the Hub for more." if entries else ""
        )

    # ----- search -----

    @Slot()
    def search(self) -> None:
        """Search the Hub for the query (in the background)."""
        query = self._query.text().strip()
        if not query:
            self.show_recommended()
            return
        sort = str(self._sort.currentData())
        self._search_serial += 1
        serial = self._search_serial
        self._status.setText(f"Searching the Hub for “{query}”…")
        client = self._client()
        job = self._start(lambda: client.search(query, sort=sort, limit=40), "hearth-hub-search")
        job.succeeded.connect(lambda models: self._on_results(serial, models))
        job.failed.connect(lambda message: self._on_search_failed(serial, message))

    def _on_results(self, serial: int, models: object) -> None:
        if serial != self._search_serial or not isinstance(models, list):
            return
        self._clear_results()
        self._show_hub_columns(True)
        for model in models:
            if not isinstance(model, HubModel):
                continue
            item = QTreeWidgetItem(
                [
                    model.repo_id,
                    format_params(model.n_params),
                    model.architecture,
                    model.licence or "",
                    f"{model.downloads:,}",
                    f"{model.likes:,}",
                ]
            )
            if model.gated:
                item.setText(0, f"{model.repo_id} 🔒")
                item.setToolTip(0, "Gated: accept the licence on the Hub and add a token")
            item.setData(0, _DATA_ROLE, model)
            self._results.addTopLevelItem(item)
        count = self._results.topLevelItemCount()
        self._status.setText(
            f"{count} model{'s' if count != 1 else ''} found." if count else "No GGUF models match."
        )

    def _clear_results(self) -> None:
        # Else the selection walks through the rows being removed, opening each one.
        with QSignalBlocker(self._results):
            self._results.clear()

    def _show_hub_columns(self, shown: bool) -> None:
        for column in HUB_ONLY_COLUMNS:
            self._results.setColumnHidden(column, not shown)

    def _on_search_failed(self, serial: int, message: str) -> None:
        if serial == self._search_serial:
            self._status.setText(message)

    # ----- a repo's files -----

    @Slot()
    def _on_result_selected(self) -> None:
        items = self._results.selectedItems()
        if not items:
            return
        data = items[0].data(0, _DATA_ROLE)
        if isinstance(data, CatalogEntry):
            self.details.show_entry(data)
            self._parameters = data.parameters
            self._start_fit(data.quant, data.size_bytes)
            if not data.repo_id:
                self._repo_serial += 1  # a listing or card still on its way is stale now
                self._files.clear()
                self._listing = None
                self._repo_label.setText(
                    f"<b>{html.escape(data.name)}</b><br>"
                    "Hearth's starter model: run <code>hearth starter</code> to install it."
                )
                self._update_buttons()
                return
            self.open_repo(data.repo_id, wanted_file=data.file)
        elif isinstance(data, HubModel):
            self.details.show_hub_model(data)
            self._parameters = data.n_params
            self.open_repo(data.repo_id)

    def _start_fit(self, label: str, size_bytes: int) -> None:
        """Measure this machine's fit for the file on a job; show the memory math after."""
        serial = self._repo_serial
        parameters = self._parameters
        job = self._start(lambda: machine_fit(size_bytes), "hearth-hub-fit")
        job.succeeded.connect(
            lambda badge: self._show_fit(serial, FitFacts(label, size_bytes, parameters, badge))
        )

    def _show_fit(self, serial: int, fit: FitFacts) -> None:
        if serial in (self._repo_serial, self._repo_serial - 1):  # before or after open_repo
            self.details.set_fit(fit)

    def _on_card(self, serial: int, card: object) -> None:
        if serial == self._repo_serial and isinstance(card, str):
            self.details.set_card(card or "*This repo has no model card.*")

    def _on_card_failed(self, serial: int, message: str) -> None:
        if serial == self._repo_serial:
            self.details.set_card(f"*The model card could not be fetched: {message}*")

    def open_repo(self, repo_id: str, *, wanted_file: str | None = None) -> None:
        """List a repo's GGUF files (in the background)."""
        self._repo_serial += 1
        serial = self._repo_serial
        self._wanted_file = wanted_file
        self._listing = None
        self._files.clear()
        self._gated.hide()
        self._repo_label.setText(f"Listing the files of {html.escape(repo_id)}…")
        self._update_buttons()
        client = self._client()
        job = self._start(lambda: list_repo(client, repo_id), "hearth-hub-files")
        job.succeeded.connect(lambda listing: self._on_listing(serial, listing))
        job.failed.connect(lambda message: self._on_listing_failed(serial, message))
        card = self._start(lambda: fetch_model_card(client, repo_id), "hearth-hub-card")
        card.succeeded.connect(lambda text: self._on_card(serial, text))
        card.failed.connect(lambda message: self._on_card_failed(serial, message))

    def _on_listing(self, serial: int, listing: object) -> None:
        if serial != self._repo_serial:
            return
        if isinstance(listing, GatedRepo):
            self._show_gated(listing)
            return
        if not isinstance(listing, RepoListing):
            return
        self._listing = listing
        repo = listing.repo
        url = f"https://huggingface.co/{repo.repo_id}"
        self._repo_label.setText(
            f"<b>{html.escape(repo.repo_id)}</b> · <a href='{url}'>page on the Hub</a>"
        )
        recommended = repo.recommended()
        wanted: QuantOption | None = None
        if self._wanted_file:
            wanted = next(
                (o for o in repo.options if any(f.path == self._wanted_file for f in o.files)),
                None,
            )
        preselect = wanted or recommended
        for option, badge in zip(repo.options, listing.badges, strict=True):
            parts = str(len(option.files)) if option.is_split else ""
            label = option.quant + (" · vision projector" if option.is_projector else "")
            if option is recommended:
                label += "  (recommended)"
            item = QTreeWidgetItem(
                [label, format_bytes(option.size_bytes), parts, FIT_TEXT.get(badge, badge)]
            )
            item.setToolTip(3, FIT_TIPS.get(badge, ""))
            item.setToolTip(0, "\n".join(f.path for f in option.files))
            item.setData(0, _DATA_ROLE, option)
            self._files.addTopLevelItem(item)
            if option is preselect:
                self._files.setCurrentItem(item)
        if not repo.options:
            self._repo_label.setText(f"{html.escape(repo.repo_id)} has no GGUF files.")
        if repo.gated:  # the Hub lists a gated repo's files but serves them only with a token
            endpoint = self._endpoint or "https://huggingface.co"
            self._show_gated(GatedRepo(repo.repo_id, gated_message(endpoint, repo.repo_id)))
        self._update_buttons()

    def _on_listing_failed(self, serial: int, message: str) -> None:
        if serial == self._repo_serial:
            self._repo_label.setText(html.escape(message))

    def _show_gated(self, gated: GatedRepo) -> None:
        url = f"https://huggingface.co/{gated.repo_id}"
        if self._listing is None:
            self._repo_label.setText(f"<b>{html.escape(gated.repo_id)}</b>")
        self._gated_label.setText(
            f"{html.escape(gated.message)}<br>Open <a href='{url}'>its page</a>, accept the "
            "licence, then paste an access token here."
        )
        self._gated.setProperty("repoId", gated.repo_id)
        self._gated.show()

    @Slot()
    def save_token_and_retry(self) -> None:
        """Store the token where huggingface_hub keeps it and list the gated repo again."""
        token = self._token_field.text().strip()
        repo_id = self._gated.property("repoId")
        if not token or not isinstance(repo_id, str):
            return
        self._token = token
        self._token_field.clear()
        job = self._start(lambda: save_token(token), "hearth-hub-token")
        job.succeeded.connect(lambda _r: self.open_repo(repo_id))
        job.failed.connect(self._status.setText)

    # ----- download -----

    def selected_option(self) -> QuantOption | None:
        """The selected file option of the repo on show."""
        items = self._files.selectedItems()
        option = items[0].data(0, _DATA_ROLE) if items else None
        return option if isinstance(option, QuantOption) else None

    @Slot()
    def download_selected(self) -> None:
        """Queue the selected file option."""
        option = self.selected_option()
        if option is not None and self._listing is not None:
            self.downloadRequested.emit(self._listing.repo, option)
            self._status.setText(f"Queued {option.quant} of {self._listing.repo.repo_id}.")

    @Slot()
    def _on_file_selected(self) -> None:
        option = self.selected_option()
        items = self._files.selectedItems()
        if option is not None and self._listing is not None and items:
            index = self._files.indexOfTopLevelItem(items[0])
            badge = self._listing.badges[index]
            self.details.set_fit(FitFacts(option.quant, option.size_bytes, self._parameters, badge))
        self._update_buttons()

    def _update_buttons(self) -> None:
        self._download.setEnabled(self.selected_option() is not None and self._listing is not None)

    # ----- plumbing -----

    @property
    def endpoint(self) -> str | None:
        """The Hub endpoint in use (None: huggingface_hub's own)."""
        return self._endpoint

    @property
    def token(self) -> str | None:
        """The token given in this session (None: huggingface_hub's stored one)."""
        return self._token

    def _client(self) -> HubClient:
        return HubClient(endpoint=self._endpoint, token=self._token)

    def _start(self, function: Callable[[], object], name: str) -> BackgroundJob:
        return self._jobs.start(function, name)

    def wait_for_jobs(self, timeout_ms: int) -> bool:
        """Wait for searches and listings in flight (at shutdown)."""
        return self._jobs.wait(timeout_ms)
