"""Crash points for fault-injection tests: kill this process at an exact place in the code.

``CRM_CRASH_AT=relay.after_send`` makes the process SIGKILL itself the first time it reaches
``crash_point("relay.after_send")``; ``CRM_CRASH_AT=relay.after_send:3`` the third time. The
environment is read once at import, so a crash point costs one comparison when unset.

Crash points placed in the platform (see docs/reliability.md):
- ``relay.before_send``: the relay has read a batch of unsent rows, nothing sent yet;
- ``relay.mid_batch``: the first row of a batch of several is acknowledged, the rest not sent;
- ``relay.after_send``: the broker acknowledged the whole batch, the rows are not marked sent;
- ``consumer.after_db_commit``: a consumer committed its read-model change and processed ids,
  not yet its Kafka offsets.
"""

import os
import signal

ENV = "CRM_CRASH_AT"


def _parse(spec: str | None) -> tuple[str | None, int]:
    if not spec:
        return None, 0
    name, _, nth = spec.partition(":")
    return name, int(nth) if nth else 1


_TARGET, _NTH = _parse(os.environ.get(ENV))
_seen = 0


def armed(name: str) -> bool:
    """True if this process is set to crash at ``name`` (lets a caller prepare the moment)."""
    return _TARGET == name


def crash_point(name: str) -> None:
    """SIGKILL this process if ``CRM_CRASH_AT`` names this point (on its N-th pass)."""
    global _seen
    if _TARGET is None or _TARGET != name:
        return
    _seen += 1
    if _seen >= _NTH:
        os.kill(os.getpid(), signal.SIGKILL)
