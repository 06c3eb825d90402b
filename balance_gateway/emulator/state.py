"""The emulated Balance's state and every operation on it, put together from one mixin per concern:

store.py (records, ids, Tids, delayed work, state file) <- accounting.py (money, groups, coverage, NotifyOrder2)
<- clients.py <- orders.py <- requests.py <- overdraft.py (and NotifyClient2) <- control.py (Emulator.*).
"""

from __future__ import annotations

from balance_gateway.emulator.control import Control


class EmulatorState(Control):
    """Everything Balance knows, in memory. Callers hold `lock` around every call (the server does)."""
