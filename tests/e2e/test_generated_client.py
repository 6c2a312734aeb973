"""The gateway's /openapi.json is enough to write a working client: one is
generated from it at test time (openapi-python-client, pinned in setup.py's
dev extras) and drives the whole shop over real sockets, each service its
own process (tests.e2e.stack).

Nothing here names what the generator names after the document's layout (a
tag's module, a model's class): each operation is found by its operationId,
read from the document by path and method, as the generator's
``api/<tag>/<snake_case(operationId)>.py``; each request body is built with
the class ``sync_detailed`` declares for it. What the client answers is
checked by type: a success and an error alike must come back as one of the
generated models, the one named after the document's shared schema where the
response refers to one.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import time
import typing
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import attrs
import pytest
import requests

from goshop_common.settings import DEV_OPS_TOKEN

PACKAGE = "generated_gateway_client"
MARKDOWN_TIMELINE = "/v1/ops/orders/{id}/timeline.md"
PASSWORD = "long enough password"


def snake_case(operation_id: str) -> str:
    """The module name openapi-python-client gives an operation: words split
    at delimiters and camelCase humps, joined by ``_``, lower-cased."""
    value = "".join(c for c in operation_id if c.isidentifier() or c.isdecimal() or c in "._- ")
    if any(c.isupper() for c in value):
        value = " ".join(re.split("([A-Z]?[a-z]+)", value))
    return "_".join(re.findall(r"[^._\- ]+", value)).lower()


@dataclass
class GeneratedClient:
    """The package generated from the gateway's document, and the document."""

    document: dict
    root: Path
    package: ModuleType
    base_url: str
    # What the generator printed: its warnings name what it left out.
    output: str

    def operation(self, method: str, path: str) -> ModuleType:
        operation_id = self.document["paths"][path][method]["operationId"]
        name = snake_case(operation_id)
        found = sorted((self.root / PACKAGE / "api").glob(f"*/{name}.py"))
        assert len(found) == 1, f"{method.upper()} {path} ({operation_id}): {found} under api/*/{name}.py"
        return importlib.import_module(f"{PACKAGE}.api.{found[0].parent.name}.{name}")

    def call(self, method: str, path: str, client, body: dict | None = None, **arguments):
        """``sync_detailed`` of the operation, its body (a JSON object here)
        turned into the model class the function declares for it."""
        function = self.operation(method, path).sync_detailed
        if body is not None:
            declared = typing.get_type_hints(function)["body"]
            model = next(t for t in typing.get_args(declared) or (declared,) if hasattr(t, "from_dict"))
            arguments["body"] = model.from_dict(body)
        return function(client=client, **arguments)

    def anonymous(self):
        return self.package.Client(base_url=self.base_url, raise_on_unexpected_status=True, timeout=10)

    def bearer(self, token: str):
        return self.package.AuthenticatedClient(
            base_url=self.base_url, token=token, raise_on_unexpected_status=True, timeout=10
        )

    def assert_typed(self, response, method: str, path: str, status: int):
        """The answer has the status, and its body parsed into a generated
        model: the shared schema's own where the response refers to one."""
        assert response.status_code == status, (method, path, response.status_code, response.content)
        parsed = response.parsed
        assert attrs.has(type(parsed)), f"{method.upper()} {path} {status}: parsed as {type(parsed)!r}"
        assert type(parsed).__module__.startswith(f"{PACKAGE}.models."), type(parsed).__module__
        schema = self.document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
        reference = schema["schema"].get("$ref", "")
        if reference.startswith("#/components/schemas/"):
            assert type(parsed).__name__ == reference.rsplit("/", 1)[1], (method, path, status)
        return parsed


@pytest.fixture(scope="module")
def generated(stack, tmp_path_factory) -> typing.Iterator[GeneratedClient]:
    base_url = f"http://127.0.0.1:{stack.gateway}"
    document = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    root = tmp_path_factory.mktemp("generated")
    (root / "gateway.json").write_text(json.dumps(document))
    # No post hooks: they run ruff over the code, which changes nothing it does.
    (root / "config.yaml").write_text("post_hooks: []\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(root / "gateway.json"),
            "--output-path",
            str(root / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(root / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    try:
        yield GeneratedClient(document, root, importlib.import_module(PACKAGE), base_url, result.stdout + result.stderr)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def sign_up(generated: GeneratedClient) -> dict:
    account = {"email": f"gen-{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD}
    registered = generated.call("post", "/v1/users/register", generated.anonymous(), body=account)
    user = generated.assert_typed(registered, "post", "/v1/users/register", 201)
    assert user.email == account["email"]
    logged_in = generated.call("post", "/v1/users/login", generated.anonymous(), body=account)
    tokens = generated.assert_typed(logged_in, "post", "/v1/users/login", 200)
    return {"email": account["email"], "access": tokens.access_token, "refresh": tokens.refresh_token}


def check_out_until_paid(generated: GeneratedClient, customer: dict) -> str:
    client = generated.bearer(customer["access"])
    key = f"generated-{uuid.uuid4().hex}"
    body = {"amount_cents": 19901, "currency": "RUB"}
    created = generated.call("post", "/v1/checkout", client, body=body, idempotency_key=key)
    order = generated.assert_typed(created, "post", "/v1/checkout", 201)
    # The same key and body: the first answer again, not a second order.
    again = generated.call("post", "/v1/checkout", client, body=body, idempotency_key=key)
    assert generated.assert_typed(again, "post", "/v1/checkout", 201).id == order.id
    assert again.headers["Idempotent-Replayed"] == "true"
    deadline = time.monotonic() + 60
    while True:
        polled = generated.call("get", "/v1/orders/{id}/status", client, id=order.id)
        status = generated.assert_typed(polled, "get", "/v1/orders/{id}/status", 200)
        if status.status != "new" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # 19901 is not divisible by five: payments confirms it (docs/api.md).
    assert (status.id, status.status) == (order.id, "paid")
    return order.id


@pytest.fixture(scope="module")
def paid_order(generated) -> str:
    return check_out_until_paid(generated, sign_up(generated))


def test_the_gateway_document_generates_a_client_without_warnings(generated):
    # The generator leaves out what it cannot parse (a response, a whole
    # model) and only warns.
    assert "Warning" not in generated.output, generated.output


def test_a_generated_client_signs_up_checks_out_sees_the_order_paid_lists_its_session_and_logs_out(generated):
    customer = sign_up(generated)
    check_out_until_paid(generated, customer)
    client = generated.bearer(customer["access"])
    listed = generated.call("get", "/v1/users/sessions", client)
    sessions = generated.assert_typed(listed, "get", "/v1/users/sessions", 200).sessions
    assert [session.current for session in sessions] == [True]
    logged_out = generated.call(
        "post", "/v1/users/logout", generated.anonymous(), body={"refresh_token": customer["refresh"]}
    )
    assert (logged_out.status_code, logged_out.parsed) == (204, None)
    # The session has ended: the access token still signs, but no longer manages sessions.
    ended = generated.call("get", "/v1/users/sessions", client)
    assert generated.assert_typed(ended, "get", "/v1/users/sessions", 401).error == "invalid token"
    assert "the session of the access token has ended" in ended.headers["WWW-Authenticate"]


def test_a_wrong_password_comes_back_as_the_clients_error_model(generated):
    customer = sign_up(generated)
    wrong = {"email": customer["email"], "password": "not the password at all"}
    refused = generated.call("post", "/v1/users/login", generated.anonymous(), body=wrong)
    assert generated.assert_typed(refused, "post", "/v1/users/login", 401).error == "invalid credentials"
    # A body its schema refuses: the 400's error model, with each problem in details.
    short = generated.call(
        "post", "/v1/users/register", generated.anonymous(), body={"email": "x@example.com", "password": "short"}
    )
    invalid = generated.assert_typed(short, "post", "/v1/users/register", 400)
    assert invalid.error == "weak password"
    assert [detail.name for detail in invalid.details] == ["password"]


def test_an_operator_reads_the_paid_orders_timeline_as_json(generated, paid_order):
    path = "/v1/ops/orders/{id}/timeline"
    answered = generated.call("get", path, generated.bearer(DEV_OPS_TOKEN), id=paid_order)
    timeline = generated.assert_typed(answered, "get", path, 200)
    assert timeline.order.id == paid_order
    events = [entry.event for entry in timeline.entries]
    assert events[0] == "order created"
    assert "status changed" in events
    # Any other token is refused, in the error model.
    refused = generated.call("get", path, generated.bearer("not-the-operator-token"), id=paid_order)
    assert generated.assert_typed(refused, "get", path, 401).error == "unauthorized"


def test_an_operator_reads_the_paid_orders_timeline_as_markdown(generated, paid_order):
    answered = generated.call("get", MARKDOWN_TIMELINE, generated.bearer(DEV_OPS_TOKEN), id=paid_order)
    assert answered.status_code == 200, answered.content
    assert answered.headers["Content-Type"].startswith("text/markdown")
    assert isinstance(answered.parsed, str)
    assert answered.parsed.startswith(f"# Order {paid_order}\n")
    assert "- status: **paid**" in answered.parsed
