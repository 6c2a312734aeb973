"""The service's OpenAPI document, generated from its Cornice services and
colander schemas, served at ``/openapi.json``."""

from __future__ import annotations

import colander
from cornice_swagger import CorniceSwagger
from cornice_swagger.converters.schema import StringTypeConverter

from goshop_common.rest import Service, body_validator
from goshop_common.schemas import StrictString

openapi = Service(name="openapi", path="/openapi.json", description="This document.")


def _body_schema(schema, args):
    # cornice_swagger recognises Cornice's own body validator; goshop's wraps it.
    if body_validator in args.get("validators", ()):
        wrapped = colander.MappingSchema()
        wrapped["body"] = schema
        return wrapped
    return schema


class _Generator(CorniceSwagger):
    schema_transformers = [_body_schema]
    custom_type_converters = {StrictString: StringTypeConverter}


def build_document(registry, title: str) -> dict:
    generator = _Generator(list(registry.cornice_services.values()), pyramid_registry=registry)
    return generator.generate(title=title, version="1.0", base_path="/")


@openapi.get()
def openapi_view(request):
    document = getattr(request.registry, "openapi_document", None)
    if document is None:
        document = build_document(request.registry, request.registry.settings.get("goshop.title", "goshop"))
        request.registry.openapi_document = document
    return document


def includeme(config) -> None:
    config.add_cornice_service(openapi)
