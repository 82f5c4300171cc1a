"""Hourly caps on the Millis sessions fresh phone calls start (docs/router.md, "Caps"): per dialed number (a
number route's ``max_calls_per_hour``, or the default agent's per-number cap) and, for the default agent, for the
whole stack. Callers of no number share one counter. A count that cannot be made lets the call through: the
caps bound spending, and a caller is never turned away for the store's fault."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from millis_sip.core.errors import BridgeError
from millis_sip.core.keys import StackKeys
from millis_sip.core.phone import number_key
from millis_sip.core.ports import Clock, InboundCallStore, Parallel, store_budget

log = logging.getLogger(__name__)

DEFAULT_AGENT_COUNTER = "default-agent"  # the stack-wide hourly counter of the default agent's sessions


class HourlyCaps:
    def __init__(self, store: InboundCallStore, *, keys: StackKeys, clock: Clock, parallel: Parallel) -> None:
        self._store = store
        self._keys = keys
        self._clock = clock
        self._parallel = parallel

    def admit(self, dialed: str | None, cap: int | None, total_cap: int | None, deadline: float) -> bool:
        """Count the call against its dialed number's hourly cap (callers of no number share one counter) and,
        for the default agent, the stack's: both counts in one round trip, each within the store's budget (the
        keys secret that names the number's counter is read inside it too). A count that cannot be made lets
        the call through: the caps bound spending, and a caller is never turned away for the store's fault."""
        hour = self._clock.now().replace(minute=0, second=0, microsecond=0)
        expires, stamp = hour + timedelta(hours=2), f"{hour:%Y-%m-%dT%H}"

        def per_number(limit: int) -> Callable[[], bool]:
            def count() -> bool:
                number = self._keys.lookup_index(number_key(dialed))  # no number in clear in the key
                return self._store.count_call(f"calls-per-hour#{number}#{stamp}", limit=limit, expires_at=expires)

            return count

        def stack_wide(limit: int) -> Callable[[], bool]:
            key = f"calls-per-hour#{DEFAULT_AGENT_COUNTER}#{stamp}"
            return lambda: self._store.count_call(key, limit=limit, expires_at=expires)

        counts = [(per_number(cap), "number")] if cap is not None else []
        counts += [(stack_wide(total_cap), "stack")] if total_cap is not None else []
        results = self._parallel(*(count for count, _ in counts), timeout=store_budget(self._clock, deadline))
        admitted = True
        for (_, which), result in zip(counts, results, strict=True):
            if isinstance(result, (BridgeError, TimeoutError)):  # the store, or the keys secret, unavailable
                log.warning(
                    "Cannot count the call against an hourly cap; letting it through",
                    extra={"cap": which, "error": str(result) or "timeout"},
                )
            elif isinstance(result, BaseException):
                raise result
            elif result is False:
                log.warning("An hourly cap is reached", extra={"cap": which})
                admitted = False
        return admitted
