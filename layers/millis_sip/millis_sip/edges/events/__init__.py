"""Call events (docs/events.md): the calls table's stream records turned into EventBridge events
(``changes``) and put on the bus in batches (``publisher``), for EventsFunction."""
