"""Deployable services, the service runtime, and the ``choreo`` command line.

One package per service: the reference order domain (orders, inventory,
payments, shipping), the saga observer and the gateway.
"""

__all__: list[str] = []
