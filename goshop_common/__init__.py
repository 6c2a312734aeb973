"""Plumbing shared by the goshop services: settings, database, JSON errors,
health, request logging, tokens and the REST service base.

Each module exposes an ``includeme`` for the concern it owns, so a service's
``main`` is a list of ``config.include`` calls.
"""
