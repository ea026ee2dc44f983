"""The HTTP gateway: CloudEvents from other systems, validated, authorised, published.

``choreo run gateway`` serves ``POST /events`` (binary, structured and batch
mode of the CloudEvents HTTP binding) on ``CHOREO_GATEWAY_HOST``:``PORT``
[127.0.0.1:8081]; see ``docs/gateway.md`` and
``docs/publishing-from-other-systems.md``.
"""

from choreokit.events.extras import needs_extra as _needs_extra

with _needs_extra("gateway", "the gateway"):
    from choreokit.services.gateway._keys import (
        ApiKey,
        KeyStore,
        MintedKey,
        entry_document,
        mint_key,
    )
    from choreokit.services.gateway._settings import GatewaySettings
    from choreokit.services.gateway.app import GatewayApp, create

__all__ = [
    "ApiKey",
    "GatewayApp",
    "GatewaySettings",
    "KeyStore",
    "MintedKey",
    "create",
    "entry_document",
    "mint_key",
]
