"""Millis SIP Bridge: register calls with Millis AI and hand their SIP URIs to carriers.

The package is shipped as a Lambda layer. Domain modules (``regions``, ``sip``, ``models``,
``registration``) import neither boto3 nor httpx; the adapters (``millis``, ``store``, ``secrets``)
turn those services' errors into the domain exceptions in ``errors``.
"""
