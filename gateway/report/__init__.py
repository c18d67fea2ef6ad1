"""The site carbon report (docs/report.md): a data object (:mod:`gateway.report.data`), what the report derives
from it (:mod:`gateway.report.summary`), plots (:mod:`gateway.report.figures`), the HTML page
(:mod:`gateway.report.html`) and the PDF (:mod:`gateway.report.pdf`), and a builder from files
(:mod:`gateway.report.files`).

Above the science, below the command line; it imports neither the station nor the central service: a builder hands
it a :class:`~gateway.report.data.SiteReportData`. Importing this package, ``data``, ``summary`` or ``files`` needs
no matplotlib; the renderers do (the ``report`` extra).
"""
