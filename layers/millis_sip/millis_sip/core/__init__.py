"""The domain: call records and their state machine, registration, region choice, the inbound-call router,
SIP URIs, and the ports (protocols) it needs from the outside world.

Nothing here imports boto3, botocore, httpx, pydantic or Powertools (tests/unit/test_layout.py proves it in a
fresh interpreter): adapters implement the ports, edges translate wire formats to the commands here. The core
logs through the standard library (``logging.getLogger(__name__)``); observability formats those lines.
"""
