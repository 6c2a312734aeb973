"""Checking users' tokens: verification (``tokens``), the JWKS key store
(``jwks``) and key ids (``thumbprint``, which users names its key by too).
Signing stays with the users service."""
