"""Named shapes in the OpenAPI document: defined once, referred to wherever used."""

from __future__ import annotations

import colander
import pytest

from goshop_common.web.openapi import node_schema
from goshop_common.web.schemas import body, field, list_of


def _money(name: str = "Money", currency_pattern: str = "^[A-Z]{3}$") -> colander.SchemaNode:
    return body(
        "money", field("amount", colander.Integer()), field("currency", pattern=currency_pattern), component=name
    )


def test_a_named_shape_used_twice_is_one_schema_referred_to_twice():
    components: dict[str, dict] = {}
    schema = node_schema(body("invoice", _money(), list_of("lines", _money())), components)
    ref = {"$ref": "#/components/schemas/Money"}
    assert schema["properties"]["money"] == ref
    assert schema["properties"]["lines"]["items"] == ref
    assert list(components) == ["Money"]
    assert components["Money"]["properties"]["currency"] == {"type": "string", "pattern": "^[A-Z]{3}$"}


def test_two_different_shapes_under_one_name_are_refused():
    components: dict[str, dict] = {}
    node_schema(_money(), components)
    with pytest.raises(ValueError, match="two different shapes are named Money"):
        node_schema(_money(currency_pattern="^[a-z]{3}$"), components)


def test_a_nullable_named_shape_is_its_reference_or_null_with_the_fields_default_beside_it():
    node = colander.SchemaNode(
        colander.String(), name="code", missing="RUB", description="a code", json_schema={"nullable": True}
    )
    node.component = "Code"
    components: dict[str, dict] = {}
    schema = node_schema(node, components)
    assert schema == {
        "anyOf": [{"$ref": "#/components/schemas/Code"}, {"type": "string", "nullable": True, "enum": [None]}],
        "default": "RUB",
        "description": "a code",
    }
    # The shape itself holds none of this use's particulars.
    assert components["Code"] == {"type": "string"}


def test_without_a_components_map_a_named_shape_is_inlined():
    assert node_schema(_money())["properties"]["amount"] == {"type": "integer"}


def _upstream_document(schemas: dict) -> dict:
    return {"components": {"schemas": schemas}}


def test_the_gateway_adopts_what_a_proxied_operation_refers_to_and_what_that_refers_to():
    from goshop_common.web.openapi import _adopt_schemas

    theirs = _upstream_document(
        {
            "Page": {"type": "object", "properties": {"orders": {"items": {"$ref": "#/components/schemas/Order"}}}},
            "Order": {"type": "object"},
            "Unused": {"type": "string"},
        }
    )
    ours = {"Error": {"type": "object"}}
    operation = {
        "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}}}
    }
    _adopt_schemas(operation, theirs, "orders", ours)
    assert sorted(ours) == ["Error", "Order", "Page"]


def test_the_gateway_refuses_a_shape_two_documents_define_differently():
    from goshop_common.web.openapi import UpstreamDocumentUnavailable, _adopt_schemas

    operation = {"schema": {"$ref": "#/components/schemas/Error"}}
    with pytest.raises(UpstreamDocumentUnavailable, match="defines the schema Error unlike another document"):
        _adopt_schemas(
            operation, _upstream_document({"Error": {"type": "string"}}), "users", {"Error": {"type": "object"}}
        )
    with pytest.raises(UpstreamDocumentUnavailable, match="refers to a schema Missing it does not define"):
        _adopt_schemas({"$ref": "#/components/schemas/Missing"}, _upstream_document({}), "users", {})
