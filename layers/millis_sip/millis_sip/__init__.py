"""Millis SIP Bridge: register calls with Millis AI and hand their SIP URIs to the phone systems that bring them.

The package is shipped as a Lambda layer (docs/development.md, "Layout"): ``core/`` is the domain (call records
and their state machine, registration, region choice, the call router and the call transaction), importing no
SDK and no pydantic, with its ports (``core/ports.py``); ``adapters/`` implement them (Millis over httpx,
DynamoDB, Secrets Manager) and turn those services' errors into the core's; ``edges/`` translate each wire
format (the HTTP API, Chime, each carrier, SIP servers) to the core and back; ``wiring.py`` composes each
function's graph from ``config.py``'s settings (every variable in ``environment.py``).
"""
