"""Lambda SnapStart runtime hooks (template parameter SnapStart). The snapshot is taken after the entry
module's import; what must not outlive it (network connections, cached secrets) is dropped before the
snapshot and rebuilt after each restore. Outside SnapStart (locally, in tests) nothing is registered."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from millis_sip.core.ports import Secret


class Restorable(Protocol):
    def after_restore(self) -> None:
        """Open new connections and read credentials again."""
        ...


@dataclass(frozen=True, slots=True)
class Hooks:
    """What an entry module drops before a snapshot and rebuilds after a restore."""

    gateway: Restorable
    secrets: Sequence[Secret] = field(default_factory=tuple)

    def before_snapshot(self) -> None:
        for secret in self.secrets:
            secret.forget()

    def after_restore(self) -> None:
        self.gateway.after_restore()
        self.before_snapshot()


def register(*, before_snapshot: Callable[[], None], after_restore: Callable[[], None]) -> bool:
    """Register the hooks with the runtime's ``snapshot_restore_py``; False where it does not exist."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    return True
