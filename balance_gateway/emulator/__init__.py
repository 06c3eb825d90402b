"""The bundled Balance emulator: a standalone XML-RPC server implementing docs/balance-protocol.md.

No Django and no database: its state is its own (in memory, optionally in a JSON file). Run it with
`manage.py balance_emulator` or, in tests, `BalanceEmulator(port=0).start()`. See `server.py` for the API and
`state.py` for the conventions where the protocol is silent.
"""

from balance_gateway.emulator.server import BalanceEmulator
from balance_gateway.emulator.values import BalanceError

__all__ = ["BalanceEmulator", "BalanceError"]
