"""The ops assistant (:8085): an order's saga as a timeline, and answers about
it in plain words.

    GET  /v1/ops/orders/{id}/timeline            JSON
    GET  /v1/ops/orders/{id}/timeline.md         the same as a Markdown table
    POST /v1/ops/orders/{id}/explain             {"question": "..."} (optional)
    GET  /v1/ops/parked                          events the consumers parked (dead letters)
    POST /v1/ops/parked/{dlq_topic}/{partition}/{offset}/replay   put one back for its consumer

Operators only: ``Authorization: Bearer $GOSHOP_OPS_TOKEN`` (goshop_ops.operators).
The same answers as pages for a browser under ``/ops/`` (goshop_ops.console),
signed in once with that token.
Answers come from Ollama when ``OLLAMA_URL`` is set, from rules otherwise
(goshop_ops.explain). It reads the orders and payments schemas and writes nothing
there; a replay is its one effect, records produced to the broker.
"""

from __future__ import annotations

from sqlalchemy.orm import sessionmaker

from goshop_common.settings import load_settings
from goshop_common.web.app import make_service_app
from goshop_ops.explain import make_explainer
from goshop_ops.settings import OpsSettings


def includeme(config) -> None:
    settings: OpsSettings = config.registry.goshop_settings
    # Ops reads other services' tables through their read contracts
    # (goshop_orders.read_contract, goshop_payments.read_contract) and writes
    # nothing: its transactions are read-only, so PostgreSQL refuses a write.
    readonly = config.registry.dbengine.execution_options(postgresql_readonly=True)
    config.registry.dbsession_factory = sessionmaker(bind=readonly, expire_on_commit=False)
    # Rules, or Ollama when OLLAMA_URL is set: chosen once, at start.
    config.registry.ops_explainer = make_explainer(settings)
    config.include("goshop_ops.console")


def make_app(settings: OpsSettings, ini: dict | None = None):
    return make_service_app(settings, ini, service="ops", views="goshop_ops.views", includes=("goshop_ops",))


def main(global_config, **ini):
    """Paste entry point, served by ``python -m goshop_common.web.serve goshop_ops/development.ini``
    (not pserve: it has neither the internal port nor the slow-client guard)."""
    return make_app(load_settings(OpsSettings, ini), ini)
