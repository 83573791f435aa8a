"""The home dashboard's panels. Each module adds a panel provider here as it lands; a panel
is shown only to users who hold its permission."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    permission: str | None
    template: str
    context: Callable[[object], dict]
    link: str


PANELS: list[Panel] = []


def register_panel(panel: Panel) -> None:
    PANELS[:] = [p for p in PANELS if p.key != panel.key] + [panel]


def panels_for(request) -> list[dict]:
    user = request.user
    shown = []
    for panel in PANELS:
        if panel.permission and not user.has_perm(panel.permission):
            continue
        shown.append({"key": panel.key, "title": panel.title, "template": panel.template,
                      "link": panel.link, **panel.context(request)})
    return shown


def dashboard_context(request) -> dict:
    return {"panels": panels_for(request)}
