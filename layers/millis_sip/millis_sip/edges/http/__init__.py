"""The management API edge: API Gateway REST events in, JSON out (Powertools resolver, pydantic models,
OpenAPI, idempotency, the one table of error answers)."""
