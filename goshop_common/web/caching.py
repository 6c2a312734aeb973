"""``Cache-Control: no-store`` on every answer that does not say otherwise.

Health answers must be fresh each time a probe asks (the original Go service
sends ``no-store`` on them), and the API's answers carry tokens and personal
data that no shared cache may keep. A view that wants caching sets its own
header (the JWKS document does).
"""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.events import NewResponse


def _no_store_unless_set(event: NewResponse) -> None:
    # NewResponse fires once for whatever the tweens and views answered: the
    # body limit's 413 and the exception views' errors get the header too.
    headers = event.response.headers
    if "Cache-Control" not in headers:
        headers["Cache-Control"] = "no-store"


def includeme(config: Configurator) -> None:
    config.add_subscriber(_no_store_unless_set, NewResponse)
