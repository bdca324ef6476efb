"""The right-hand column: the sampling panel above, the explorer and the context view in
tabs below, so a slider and the distribution it changes are on screen together."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QTabWidget, QWidget

from app.ui.sampling.context_view import ContextView
from app.ui.sampling.explorer_panel import ExplorerPanel
from app.ui.sampling.sampling_panel import SamplingPanel
from app.ui.widgets import named


class SideColumn(QSplitter):
    """Sampling panel | explorer and context tabs.

    Object names: sideColumn, insightTabs (tabs "Explorer" and "Context"), and those of
    `SamplingPanel`, `ExplorerPanel` and `ContextView`.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Vertical, parent)
        self.setObjectName("sideColumn")
        self.setChildrenCollapsible(False)
        self.sampling = SamplingPanel()
        self.explorer = ExplorerPanel()
        self.context = ContextView()
        self.tabs = QTabWidget()
        named(self.tabs, "insightTabs", "Explorer and context")
        self.tabs.addTab(self.explorer, "&Explorer")
        self.tabs.addTab(self.context, "Conte&xt")
        self.addWidget(self.sampling)
        self.addWidget(self.tabs)
        self.setStretchFactor(0, 3)  # the sliders get the larger share
        self.setStretchFactor(1, 2)
