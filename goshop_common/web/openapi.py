"""The service's OpenAPI 3.0 document, served at ``/openapi.json``.

Generated, never written by hand: paths and methods from the Cornice
services; parameters and request bodies from the colander schemas the
validators enforce, with every rule of every node (a validator the
generator cannot describe is an error, not a silent gap); responses from
what each view declares (``responses=``, ``auth=``, ``headers=``, ``path=``
on its decorator, see goshop_common.web.rest) plus what the shared machinery
answers on its own: 400 for a schema, 401 for ``auth``, 413 and 415 for a
JSON body.

The gateway's proxied routes are documented by their upstreams: its
document takes each one's operation from that upstream's own document.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
from typing import TYPE_CHECKING, Any

import colander

from goshop_common.web.errors import error_response
from goshop_common.web.rest import Service, Tag, body_validator, querystring_validator
from goshop_common.web.schemas import body, error_body

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.registry import Registry
    from pyramid.request import Request
    from pyramid.response import Response

    from goshop_common.settings import BaseSettings

log = logging.getLogger("goshop.openapi")

# The nodes say ``nullable``, a 3.0 keyword that 3.1 dropped for type arrays:
# moving to 3.1 means changing them too.
OPENAPI_VERSION = "3.0.3"

# The security schemes a view names in ``auth=``.
BEARER = "bearer"
OPERATOR = "operator"
SECURITY_SCHEMES = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from POST /v1/users/login.",
    },
    OPERATOR: {
        "type": "http",
        "scheme": "bearer",
        "description": "The operations team's shared token (GOSHOP_OPS_TOKEN); a customer's token is refused.",
    },
}


@dataclasses.dataclass(frozen=True)
class Reply:
    """One documented response: ``body`` is its JSON body (a colander node;
    None for no body), ``media_types`` other representations (media type to
    JSON schema), ``headers`` the headers it carries (name to description;
    a trailing ``"?"`` on the name marks one that may be absent)."""

    description: str
    body: colander.SchemaNode | None = None
    media_types: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def error(description: str, headers: dict[str, str] | None = None) -> Reply:
    """A response in goshop's error envelope (goshop_common.web.errors)."""
    return Reply(description, error_body(), headers=headers or {})


RETRY_AFTER = {"Retry-After": "Seconds to wait before trying again."}
TOO_LARGE = error("request body too large: over GOSHOP_MAX_BODY_BYTES, whatever the route")
SERVICE_UNAVAILABLE = error("service unavailable: the database did not answer", RETRY_AFTER)
# The 401 of ``auth`` (goshop_common.auth.tokens.challenge writes the header):
# RFC 6750 3, no error code without a Bearer token, invalid_token with one,
# and "expired" (refresh) told apart from "invalid" (log in again).
CHALLENGE = {
    "WWW-Authenticate": (
        '`Bearer` when no Bearer token was sent; `Bearer error="invalid_token", '
        'error_description="the access token expired"` for an expired access token (refresh it), '
        '`error_description="the access token is invalid"` for any other.'
    )
}
OPERATOR_CHALLENGE = {
    "WWW-Authenticate": (
        '`Bearer realm="goshop-ops"` when no Bearer token was sent; `Bearer realm="goshop-ops", '
        'error="invalid_token", error_description="the operator token is invalid"` for a wrong one.'
    )
}
UNAUTHORIZED = {
    BEARER: error("unauthorized (no credentials) or invalid token", CHALLENGE),
    OPERATOR: error("unauthorized: no operator token, or a wrong one", OPERATOR_CHALLENGE),
}


# --- colander nodes to JSON Schema ------------------------------------------


def node_schema(node: colander.SchemaNode, components: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON Schema (OpenAPI 3.0 dialect) of a bound colander node. A node
    with a ``component`` name (goshop_common.web.schemas.body) is defined once
    in ``components``, and referred to: the same shape named twice is one
    schema, and two shapes under one name are an error."""
    name = getattr(node, "component", None)
    if name is None or components is None:
        return _inline_schema(node, components)
    schema = _inline_schema(node, components)
    # What belongs to a use of the shape (this field's default, its words,
    # whether it may be null), not to the shape.
    use = {key: schema.pop(key) for key in _USE_SITE if key in schema}
    known = components.setdefault(name, schema)
    if known != schema:
        raise ValueError(f"two different shapes are named {name}: {known} and {schema}")
    ref = {"$ref": f"#/components/schemas/{name}"}
    if use.pop("nullable", False):
        # OpenAPI 3.0 ignores ``nullable`` beside a $ref, and beside an allOf
        # without a type: null is an alternative of its own.
        return {"anyOf": [ref, {"type": schema["type"], "nullable": True, "enum": [None]}], **use}
    return {"allOf": [ref], **use} if use else ref


_USE_SITE = ("nullable", "default", "description")


def _inline_schema(node: colander.SchemaNode, components: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    typ = node.typ
    if isinstance(typ, colander.Mapping):
        schema: dict[str, Any] = {"type": "object", "properties": {}}
        required = []
        for child in node.children:
            schema["properties"][child.name] = node_schema(child, components)
            if child.required:
                required.append(child.name)
        if required:
            schema["required"] = required
        # Only a mapping that refuses unknown keys says so; "ignore" and
        # "preserve" both accept them.
        if typ.unknown == "raise":
            schema["additionalProperties"] = False
    elif isinstance(typ, colander.Sequence):
        # A colander sequence has exactly one child: the node of its items.
        schema = {"type": "array", "items": node_schema(node.children[0], components)}
    elif isinstance(typ, colander.Boolean):
        schema = {"type": "boolean"}
    # Integer before Number: colander.Integer is a Number.
    elif isinstance(typ, colander.Integer):
        schema = {"type": "integer"}
    elif isinstance(typ, colander.Number):
        schema = {"type": "number"}
    elif isinstance(typ, colander.String):
        schema = {"type": "string"}
    else:
        raise TypeError(f"no JSON Schema for colander type {type(typ).__name__} ({node.name})")
    if node.description:
        schema["description"] = str(node.description)
    # colander's markers (required, drop, null) are no value a client sees,
    # and a deferred one is only known once bound.
    default = node.missing
    if default not in (colander.required, colander.drop, colander.null, None) and not isinstance(
        default, colander.deferred
    ):
        schema["default"] = default
    _describe_validator(node.validator, schema, node)
    # Last: what a node declares itself (a format, nullable) says what colander
    # cannot, and wins over what was derived.
    schema.update(getattr(node, "json_schema", None) or {})
    return schema


def _describe_validator(validator: object, schema: dict[str, Any], node: colander.SchemaNode) -> None:
    """Add to ``schema`` what ``validator`` enforces. A validator it cannot
    describe is a TypeError: the document must never promise less than the
    API checks."""
    if validator is None:
        return
    # goshop's own validators describe themselves (goshop_common.web.schemas).
    described = getattr(validator, "json_schema", None)
    if described is not None:
        schema.update(described)
    elif isinstance(validator, colander.All):
        for each in validator.validators:
            _describe_validator(each, schema, node)
    elif isinstance(validator, colander.Length):
        # colander's Length bounds a list's items as well as a string's characters.
        low, high = ("minItems", "maxItems") if schema.get("type") == "array" else ("minLength", "maxLength")
        if validator.min is not None:
            schema[low] = validator.min
        if validator.max is not None:
            schema[high] = validator.max
    elif isinstance(validator, colander.Range):
        if validator.min is not None:
            schema["minimum"] = validator.min
        if validator.max is not None:
            schema["maximum"] = validator.max
    elif isinstance(validator, colander.OneOf):
        schema["enum"] = list(validator.choices)
    elif hasattr(validator, "rule"):
        # A wrapper that refuses an empty value, then applies ``rule``
        # (goshop_users.schemas._PresentThen).
        if schema.get("type") == "string":
            schema["minLength"] = max(schema.get("minLength", 0), 1)
        _describe_validator(validator.rule, schema, node)
    elif _is_node_method(validator, node):
        pass  # a schema's own ``validator`` method: described by its ``json_schema``
    else:
        raise TypeError(f"{node.name}: validator {validator!r} has no json_schema, so the document cannot say it")


def _is_node_method(validator: object, node: colander.SchemaNode) -> bool:
    """Whether ``validator`` is ``node``'s own method, and the node carries
    the ``json_schema`` that describes it."""
    return getattr(validator, "__self__", None) is node and getattr(node, "json_schema", None) is not None


# --- operations ---------------------------------------------------------------

# A Pyramid placeholder, ``{id}`` or ``{id:regex}``: the name is the parameter's.
_PATH_PARAMETER = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def _bound(schema: colander.SchemaNode, settings: BaseSettings) -> colander.SchemaNode:
    # Deferred defaults and validators (currency, amount bounds, password length) read settings.
    return schema.bind(settings=settings, request=None)


def _reply(reply: Reply, components: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A Reply as an OpenAPI response object."""
    answer: dict[str, Any] = {"description": reply.description}
    content = {}
    if reply.body is not None:
        content["application/json"] = {"schema": node_schema(reply.body, components)}
    for media_type, schema in reply.media_types.items():
        content[media_type] = {"schema": schema}
    if content:
        answer["content"] = content
    if reply.headers:
        answer["headers"] = {
            name.rstrip("?"): {"description": text, "required": not name.endswith("?"), "schema": {"type": "string"}}
            for name, text in reply.headers.items()
        }
    return answer


def _parameter(
    node: colander.SchemaNode, location: str, components: dict[str, dict[str, Any]], required: bool | None = None
) -> dict[str, Any]:
    parameter = {
        "name": node.name,
        "in": location,
        "required": node.required if required is None else required,
        "schema": node_schema(node, components),
    }
    if node.description:
        parameter["description"] = str(node.description)
    return parameter


def _body_required(schema: colander.SchemaNode) -> bool:
    # An empty object that passes means the body may be left out.
    try:
        schema.deserialize({})
    except colander.Invalid:
        return True
    return False


def _operation(
    service: Service, method: str, args: dict[str, Any], settings: BaseSettings, components: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The operation of one view: what its decorator declared, what its
    validators enforce, and the answers the shared machinery adds on its own
    (``auto``), which the view's own ``responses`` override. The shapes it
    names are added to ``components``."""
    doc = service.documentation.get(method, {})
    validators = args.get("validators") or ()
    operation: dict[str, Any] = {"operationId": f"{service.name}_{method.lower()}"}
    if service.tag is not None:
        operation["tags"] = [service.tag.name]
    if service.description:
        operation["summary"] = str(service.description)
    # The body limit is a tween's (goshop_common.web.bodylimit): every route
    # answers it, whether or not its view reads a body.
    auto: dict[int, Reply] = {413: TOO_LARGE}

    path_nodes = {node.name: node for node in doc.get("path", ())}
    # OpenAPI requires ``required: true`` on every path parameter; one the
    # view declares no node for is documented as a plain string.
    parameters = [
        _parameter(path_nodes[name], "path", components, True)
        if name in path_nodes
        else {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAMETER.findall(service.path)
    ]
    parameters += [_parameter(_bound(node, settings), "header", components) for node in doc.get("headers", ())]

    schema = args.get("schema")
    if schema is not None and querystring_validator in validators:
        parameters += [_parameter(child, "query", components) for child in _bound(schema, settings).children]
        auto[400] = error("The query string breaks a rule: `error` names the first, `details` every one.")
    if schema is not None and body_validator in validators:
        bound = _bound(schema, settings)
        # Cornice also takes a callable for ``content_type``; it names no media type.
        media_types = [c for c in (args.get("content_type") or ("application/json",)) if isinstance(c, str)]
        operation["requestBody"] = {
            "required": _body_required(bound),
            "content": {media_type: {"schema": node_schema(bound, components)} for media_type in media_types},
        }
        auto[400] = error("The body breaks a rule: `error` names the first, `details` every one.")
        auto[415] = error("content type must be application/json")
    if parameters:
        operation["parameters"] = parameters

    auth = doc.get("auth")
    if auth:
        operation["security"] = [{auth: []}]
        auto[401] = UNAUTHORIZED[auth]
    else:
        # Said, not left out: an empty list is "no credentials", where a
        # missing one would leave it to a document-wide default.
        operation["security"] = []

    replies = {**auto, **doc.get("responses", {})}
    operation["responses"] = {str(status): _reply(reply, components) for status, reply in sorted(replies.items())}
    if "upstream" in doc:
        operation["x-goshop-upstream"] = doc["upstream"]
    return operation


def build_document(registry: Registry, title: str) -> dict[str, Any]:
    """The document of the services registered with Cornice on ``registry``."""
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, dict[str, Any]] = {}
    tags: dict[str, dict[str, Any]] = {}
    # Every service Cornice knows on this registry: the openapi view's own included.
    for service in registry.cornice_services.values():
        for method, _view, args in service.definitions:
            if method == "HEAD":  # Cornice's automatic twin of GET
                continue
            operation = _operation(service, method, args, registry.goshop_settings, components)
            paths.setdefault(service.path, {})[method.lower()] = operation
            if service.tag is not None:
                tags[service.tag.name] = {"name": service.tag.name, "description": service.tag.description}
    # Only the schemes some operation names.
    schemes = sorted(
        {name for item in paths.values() for op in item.values() for s in op.get("security", ()) for name in s}
    )
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": "1.0"},
        # Relative: the operations are wherever the document itself is served.
        "servers": [{"url": "/"}],
        "tags": [tags[name] for name in sorted(tags)],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {name: SECURITY_SCHEMES[name] for name in schemes},
        },
    }
    return document


# --- the gateway: proxied operations come from the upstreams' documents -------

UPSTREAM_FAILURES = {
    502: error("upstream unavailable"),
    504: error("upstream timeout"),
}


class UpstreamDocumentUnavailable(Exception):
    """An upstream's document could not be read, or does not document a
    proxied operation: the gateway answers 503 and caches nothing."""


def proxied(service: Service, upstream: str) -> Service:
    """Marks every operation of ``service`` as forwarded, unchanged, to the
    same path on ``upstream``, whose document then describes it."""
    for method in service.defined_methods:
        service.documentation.setdefault(method, {})["upstream"] = upstream
    return service


def _fetch_document(registry: Registry, upstream: str) -> dict[str, Any]:
    """``upstream``'s own /openapi.json, through the gateway's upstream client."""
    try:
        result = registry.upstreams.request(upstream, "GET", "/openapi.json", [], None)
        if result.status != 200:
            raise UpstreamDocumentUnavailable(f"{upstream} answered {result.status}")
        document: dict[str, Any] = json.loads(result.body)
        return document
    except UpstreamDocumentUnavailable:
        raise
    except Exception as exc:  # the upstream client's failures, a body that is not JSON
        raise UpstreamDocumentUnavailable(f"{upstream}: {exc.__class__.__name__}") from exc


_SCHEMA_REF = "#/components/schemas/"


def _schema_refs(value: object) -> set[str]:
    """The names of the component schemas ``value`` refers to itself."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
            return {ref.removeprefix(_SCHEMA_REF)}
        return set().union(*(_schema_refs(each) for each in value.values()))
    if isinstance(value, list):
        return set().union(*(_schema_refs(each) for each in value))
    return set()


def _adopt_schemas(
    operation: dict[str, Any], theirs: dict[str, Any], upstream: str, ours: dict[str, dict[str, Any]]
) -> None:
    """Copy into ``ours`` every schema of the upstream's document ``theirs``
    that ``operation`` refers to, and those they refer to. A name the two
    documents define differently is an error, never one shape silently
    standing for another."""
    their_schemas = theirs.get("components", {}).get("schemas", {})
    pending, seen = _schema_refs(operation), set()
    while pending:
        name = pending.pop()
        seen.add(name)
        if name not in their_schemas:
            if name not in ours:
                raise UpstreamDocumentUnavailable(f"{upstream} refers to a schema {name} it does not define")
            continue
        if ours.setdefault(name, their_schemas[name]) != their_schemas[name]:
            raise UpstreamDocumentUnavailable(f"{upstream} defines the schema {name} unlike another document")
        pending |= _schema_refs(their_schemas[name]) - seen


def _with_upstreams(registry: Registry, document: dict[str, Any]) -> dict[str, Any]:
    """The gateway's ``document`` with each proxied operation replaced by the
    upstream's own, as amended below; each upstream's document is read once a build."""
    upstream_documents: dict[str, dict[str, Any]] = {}
    schemes = document["components"]["securitySchemes"]
    schemas = document["components"]["schemas"]
    tags = {tag["name"]: tag for tag in document["tags"]}
    for path, item in document["paths"].items():
        for method, own in list(item.items()):
            target = own.pop("x-goshop-upstream", None)
            if target is None:
                continue
            name, _, upstream_path = target.partition(" ")
            if name not in upstream_documents:
                upstream_documents[name] = _fetch_document(registry, name)
            theirs = upstream_documents[name]
            found = theirs.get("paths", {}).get(upstream_path or path, {}).get(method)
            if found is None:
                raise UpstreamDocumentUnavailable(f"{name} does not document {method.upper()} {upstream_path or path}")
            merged = copy.deepcopy(found)
            # operationIds are unique within one document: the gateway's own.
            merged["operationId"] = own["operationId"]
            # A route of the gateway's own (checkout) is a resource of its own.
            if "tags" in own:
                merged["tags"] = own["tags"]
            # What the gateway checks itself (checkout's body, the access
            # token) it documents itself; the rest is the upstream's.
            if "requestBody" in own:
                merged["requestBody"] = own["requestBody"]
            # An empty list is the gateway checking nothing itself: the
            # upstream's requirement (none, or its own scheme) stands.
            if own.get("security"):
                merged["security"] = own["security"]
            # The gateway's parameters first; an upstream's of the same name and
            # place is dropped, not listed twice.
            own_names = {(p["in"], p["name"]) for p in own.get("parameters", ())}
            merged["parameters"] = own.get("parameters", []) + [
                p for p in merged.get("parameters", ()) if (p["in"], p["name"]) not in own_names
            ]
            if not merged["parameters"]:
                del merged["parameters"]
            # Later wins: the upstream's answers, then the gateway's own, then
            # what the gateway says when the upstream fails it.
            merged["responses"] = {
                **merged["responses"],
                **own["responses"],
                **{str(s): _reply(r, schemas) for s, r in UPSTREAM_FAILURES.items()},
            }
            merged["responses"] = dict(sorted(merged["responses"].items()))
            # Each scheme an operation now names is defined as its upstream
            # defines it, else as goshop does.
            for requirement in merged.get("security", ()):
                for scheme in requirement:
                    schemes[scheme] = (
                        theirs.get("components", {})
                        .get("securitySchemes", {})
                        .get(scheme, SECURITY_SCHEMES.get(scheme))
                    )
            _adopt_schemas(merged, theirs, name, schemas)
            # The upstream's resources, as the upstream describes them.
            for tag in theirs.get("tags", ()):
                if tag["name"] in merged.get("tags", ()):
                    tags.setdefault(tag["name"], tag)
            item[method] = merged
    document["components"]["securitySchemes"] = dict(sorted(schemes.items()))
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    document["tags"] = [tags[name] for name in sorted(tags)]
    return document


# --- the view -----------------------------------------------------------------

openapi = Service(
    name="openapi",
    path="/openapi.json",
    description="This document.",
    tag=Tag("openapi", "This document: what the service answers, and how to call it."),
)

_DOCUMENT = body("document", component="OpenApiDocument")


@openapi.get(
    responses={
        200: Reply("This document: OpenAPI 3.0.", _DOCUMENT),
        503: error("an upstream's document could not be read (the gateway)"),
    }
)
def openapi_view(request: Request) -> dict[str, Any] | Response:
    """The document, built at the first request and then kept for the life
    of the process; the gateway's only once every upstream's could be read."""
    document = getattr(request.registry, "openapi_document", None)
    if document is None:
        registry = request.registry
        document = build_document(registry, registry.settings.get("goshop.title", "goshop"))
        if any("x-goshop-upstream" in op for item in document["paths"].values() for op in item.values()):
            try:
                document = _with_upstreams(registry, document)
            except UpstreamDocumentUnavailable as exc:
                # Not cached: the next request tries again.
                log.warning("openapi: upstream document unavailable: %s", exc)
                return error_response(503, "service unavailable", headers={"Retry-After": "1"})
        registry.openapi_document = document
    return document


def includeme(config: Configurator) -> None:
    config.add_cornice_service(openapi)
