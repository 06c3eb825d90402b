"""Fixtures of the gateway's tests: `fake_balance`, a tiny server answering recorded version-2 replies."""

from tests.balance_gateway.fake_balance import fake_balance as fake_balance
