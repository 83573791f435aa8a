"""A static files finder that serves plotly.js from the installed ``plotly`` package.

Charts load ``{% static "plotly/plotly.min.js" %}``: the file ships inside the Python package
(``plotly/package_data/plotly.min.js``), so its version always matches the installed plotly and
no CDN or node build is involved. Only that one file is exposed: the package data directory
also holds a 5 MB widget bundle and datasets that have no business in our static files.
"""

from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import Error
from django.core.files.storage import FileSystemStorage

PREFIX = "plotly"
FILENAME = "plotly.min.js"
PACKAGE_DATA = Path(plotly.__file__).resolve().parent / "package_data"


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=PACKAGE_DATA)
        # collectstatic copies each listed file to ``storage.prefix/path``.
        self.storage.prefix = PREFIX

    def check(self, **kwargs):
        if not (PACKAGE_DATA / FILENAME).is_file():
            return [
                Error(
                    f"{PACKAGE_DATA / FILENAME} is missing: reinstall the plotly package.",
                    id="adminsite.E001",
                )
            ]
        return []

    def find(self, path, find_all=False, **kwargs):
        find_all = kwargs.get("all", find_all)  # Django 5.2 still passes the old name
        if path != f"{PREFIX}/{FILENAME}":
            return []  # what Django's own finders return for "not here", either mode
        found = str(PACKAGE_DATA / FILENAME)
        return [found] if find_all else found

    def list(self, ignore_patterns):
        yield FILENAME, self.storage
