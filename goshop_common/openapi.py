"""The service's OpenAPI document, generated from its Cornice services and
colander schemas, served at ``/openapi.json``."""

from __future__ import annotations

import functools

import colander
from cornice_swagger import CorniceSwagger
from cornice_swagger.converters.schema import IntegerTypeConverter, StringTypeConverter

from goshop_common.rest import Service, body_validator, querystring_validator
from goshop_common.schemas import StrictInteger, StrictString

openapi = Service(name="openapi", path="/openapi.json", description="This document.")


def _request_schema(schema, args, settings=None):
    # Deferred defaults and validators (currency, amount bounds) read settings.
    schema = schema.bind(settings=settings, request=None)
    # cornice_swagger recognises Cornice's own validators; goshop's wrap them.
    validators = args.get("validators", ())
    for validator, location in ((body_validator, "body"), (querystring_validator, "querystring")):
        if validator in validators:
            wrapped = colander.MappingSchema()
            wrapped[location] = schema.clone()
            wrapped[location].name = location
            return wrapped
    return schema


class _Generator(CorniceSwagger):
    custom_type_converters = {StrictString: StringTypeConverter, StrictInteger: IntegerTypeConverter}


def build_document(registry, title: str) -> dict:
    generator = _Generator(list(registry.cornice_services.values()), pyramid_registry=registry)
    generator.schema_transformers = [functools.partial(_request_schema, settings=registry.goshop_settings)]
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
