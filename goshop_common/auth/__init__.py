"""Checking users' tokens: verification (``tokens``) and the JWKS key store
(``jwks``). Signing stays with the users service."""
