"""The bundled Balance emulator: a standalone XML-RPC server speaking version 2 of docs/balance-protocol.md.

No Django and no database: its state is its own (in memory, optionally in a JSON file), reached only over HTTP,
like the real Balance. Run it with `manage.py balance_emulator` or, in tests, `BalanceEmulator(port=0).start()`.

The package, by concern: values.py (wire values), options.py (the variants and [unknown]s), records.py
(dataclasses), store.py (storage), accounting.py (money, groups, coverage, unpaid completion, NotifyOrder2),
clients.py, orders.py, requests.py (requests and invoices), overdraft.py (overdraft, credit, NotifyClient2),
control.py (`Emulator.*` and `Emulator.State`), state.py (all of it together), faults.py, notifier.py,
handler.py (HTTP: XML-RPC, the ticket check, injected faults), pages.py (paystep) and server.py
(`BalanceEmulator`: lifecycle, calls, the state file).
"""

from balance_gateway.emulator.options import EmulatorOptions
from balance_gateway.emulator.server import BalanceEmulator
from balance_gateway.emulator.values import BalanceError

__all__ = ["BalanceEmulator", "BalanceError", "EmulatorOptions"]
