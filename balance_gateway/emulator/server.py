"""The emulator's HTTP side: XML-RPC at `POST /xmlrpc`, the payer's pages at `/paystep/<id>`, and `BalanceEmulator`,
which ties the state, the notifier and fault injection together and runs them in daemon threads.

    emu = BalanceEmulator(port=0, notify_url="http://127.0.0.1:8000/balance/notify?secret=x").start()
    emu.url                          # "http://127.0.0.1:<port>/xmlrpc"
    emu.wait_notifications_idle(10)  # True once nothing is queued or being retried
    emu.stop()

Every call runs under the state's one lock; each mutating call then saves the state file (if any) atomically.
Faults never touch `Emulator.*` calls. A faulted error answers without applying the call; a timeout applies it
and answers after `timeout_seconds`; a lost response applies it and closes the connection without an answer.
A ticker thread applies delayed work (asynchronous completions) when it falls due.
The HTTP side (XML-RPC, the ticket check, injected faults, the paystep page) is handler.py.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from balance_gateway.emulator.faults import FaultPlan
from balance_gateway.emulator.handler import Handler, Server, Server6
from balance_gateway.emulator.notifier import Notifier
from balance_gateway.emulator.options import EmulatorOptions
from balance_gateway.emulator.state import EmulatorState
from balance_gateway.emulator.values import BalanceError, invalid, parse_int

logger = logging.getLogger("balance_gateway.emulator")


# XML-RPC name -> (EmulatorState method, mutating)
BALANCE_METHODS: dict[str, tuple[str, bool]] = {
    "Balance2.CreateClient": ("create_client", True),
    "Balance2.CreatePerson": ("create_person", True),
    "Balance2.CreateUserClientAssociation": ("create_user_client_association", True),
    "Balance2.FindClient": ("find_client", False),
    "Balance2.GetClientByIdBatch": ("get_client_by_id_batch", False),
    "Balance2.GetClientPersons": ("get_client_persons", False),
    "Balance2.GetClientContracts": ("get_client_contracts", False),
    "Balance2.CreateOrUpdateOrdersBatch": ("create_or_update_orders_batch", True),
    "Balance2.GetOrdersInfo": ("get_orders_info", False),
    "Balance2.CreateRequest2": ("create_request2", True),
    "Balance2.CreateInvoice": ("create_invoice", True),
    "Balance2.UpdateCampaigns": ("update_campaigns", True),
    "Balance2.CreateTransferMultiple": ("create_transfer_multiple", True),
    "Balance2.GetOverdraftParams": ("get_overdraft_params", False),
    "Balance2.SetOverdraftParams": ("set_overdraft_params", True),
    "Balance2.GetClientCreditLimits": ("get_client_credit_limits", False),
}
_STATE_EMULATOR_METHODS: dict[str, tuple[str, bool]] = {
    "Emulator.PayRequest": ("pay_request", True),
    "Emulator.PayInvoice": ("pay_invoice_control", True),
    "Emulator.GrantOverdraft": ("grant_overdraft", True),
    "Emulator.SetOverdraftSpent": ("set_overdraft_spent", True),
    "Emulator.CreateContract": ("create_contract", True),
    "Emulator.UpdateOrder": ("update_order", True),
    "Emulator.SetProduct": ("set_product", True),
    "Emulator.ForgetUser": ("forget_user", True),
    "Emulator.SetLogin": ("set_login", True),
    "Emulator.Seed": ("seed", True),
}
class BalanceEmulator:
    """A standalone Balance: no Django, no database; its own state in memory (and in `state_file`, if given)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        notify_url: str | None = None,
        state_file: str | os.PathLike | None = None,
        seed: int = 0,
        timeout_seconds: float = 2.0,
        *,
        options: EmulatorOptions | dict | None = None,
        public_url: str | None = None,
        notify_timeout: float = 5.0,
        notify_retry_initial: float = 0.2,
        notify_retry_max: float = 5.0,
        notify_give_up_after: float = 600.0,
    ) -> None:
        self.host = host
        self.port = port
        self.notify_url = notify_url  # read by the notifier at every send: settable at any time
        self.state_file = Path(state_file) if state_file else None
        self.seed = seed
        self.timeout_seconds = timeout_seconds
        self.public_url = public_url.rstrip("/") if public_url else None
        if isinstance(options, EmulatorOptions):
            self.options = options
        else:
            self.options = EmulatorOptions()
            self.options.update(options or {})
        self.state = EmulatorState(self.options)
        self.faults = FaultPlan(seed, set(BALANCE_METHODS))
        self.notifier = Notifier(
            lambda: self.notify_url,
            lambda: self.faults.notify,
            protocol=lambda: (self.options.notify_protocol, self.options.notify_ticket),
            seed=seed,
            timeout=notify_timeout,
            retry_initial=notify_retry_initial,
            retry_max=notify_retry_max,
            give_up_after=notify_give_up_after,
        )
        self._methods = self._build_methods()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        if self.state_file and self.state_file.exists():
            self._load()

    # --------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> BalanceEmulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        server_class = Server6 if ":" in self.host else Server
        self._server = server_class((self.host, self.port), Handler)
        self._server.emulator = self
        self.port = self._server.server_address[1]
        self.state.base_url = self.base_url
        self.notifier.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="balance-emulator", daemon=True
        )
        self._thread.start()
        self._ticker = threading.Thread(target=self._tick, name="balance-emulator-ticker", daemon=True)
        self._ticker.start()
        logger.info("Balance emulator serving %s, notifying %s", self.url, self.notify_url or "nobody")
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping on latency or timeout faults
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._ticker is not None:
            self._ticker.join(5)
            self._ticker = None
        self.notifier.stop()
        if self.state_file:
            with self.state.lock:
                self._save_locked()

    def __enter__(self) -> BalanceEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)  # noqa: S104
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/xmlrpc"

    def wait_notifications_idle(self, timeout: float = 10) -> bool:
        """True once no delayed work (completions) is pending and no notification is queued, held back or being
        retried; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self.state.lock:
                pending = bool(self.state.pending)
            if not pending:
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return self.notifier.wait_idle(max(0.0, deadline - time.monotonic()))

    def _tick(self) -> None:
        """Apply delayed work when due (asynchronous completions, group-join moves)."""
        while not self._stopping.wait(0.01):
            with self.state.lock:
                if not self.state.pending or min(due for due, _, _ in self.state.pending) > time.monotonic():
                    continue
                try:
                    self.state.run_due()
                except Exception:
                    logger.exception("delayed work failed")
                self._flush_locked(mutating=True)

    def _flush_locked(self, *, mutating: bool) -> None:
        for notify_method, payload in self.state.take_outbox():
            self.notifier.enqueue(notify_method, payload)
        if mutating and self.state_file:
            self._save_locked()

    # ------------------------------------------------------------------------------------------------ calls
    def _build_methods(self) -> dict[str, tuple[Callable[..., Any], bool]]:
        methods: dict[str, tuple[Callable[..., Any], bool]] = {}
        for name, (attr, mutating) in {**BALANCE_METHODS, **_STATE_EMULATOR_METHODS}.items():
            methods[name] = (getattr(self.state, attr), mutating)
        methods.update(
            {
                "Emulator.Reset": (self._rpc_reset, True),
                "Emulator.State": (self._rpc_state, False),
                "Emulator.SetFaults": (self._rpc_set_faults, False),
                "Emulator.SetOptions": (self._rpc_set_options, True),
                "Emulator.ApplyPending": (self._rpc_apply_pending, True),
                "Emulator.DropNextNotifications": (self._rpc_drop_next_notifications, False),
            }
        )
        return methods

    def call(self, method: str, params: tuple | list = ()) -> Any:
        """Run one call as XML-RPC would (validation, lock, notifications, state file), without HTTP or faults."""
        entry = self._methods.get(method)
        if entry is None:
            raise invalid(f"Unknown method {method}")
        function, mutating = entry
        try:
            inspect.signature(function).bind(*params)
        except TypeError as exc:
            raise invalid(f"{method}: wrong arguments ({exc})") from exc
        with self.state.lock:
            try:
                return function(*params)
            except BalanceError:
                raise
            except Exception as exc:
                logger.exception("%s failed", method)
                raise BalanceError("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}") from exc
            finally:
                self._flush_locked(mutating=mutating)

    def _rpc_reset(self) -> list:
        self.state.reset()
        self.faults.reset(self.seed)
        self.notifier.reset(self.seed)
        return [0, "SUCCESS"]

    def _rpc_state(self) -> dict:
        return {**self.state.snapshot(), "notifications": self.notifier.stats(), "faults": self.faults.describe(),
                "options": self.options.to_json()}  # fmt: skip

    def _rpc_set_options(self, changes: Any) -> list:
        self.options.update(changes)
        self.state.settle()
        return [0, "SUCCESS"]

    def _rpc_apply_pending(self) -> list:
        """Apply every pending completion now (tests that do not want to wait for the delay)."""
        return [0, "SUCCESS", self.state.run_due(float("inf"))]

    def _rpc_set_faults(self, spec: Any) -> list:
        seed = self.faults.configure(spec)
        if seed is not None:
            self.notifier.reseed(seed)
        return [0, "SUCCESS"]

    def _rpc_drop_next_notifications(self, count: Any) -> list:
        self.notifier.drop_next(parse_int(count, "n"))
        return [0, "SUCCESS"]

    # ------------------------------------------------------------------------------------------- state file
    def _save_locked(self) -> None:
        assert self.state_file is not None
        data = self.state.to_json()
        data["pending_notifications"] = self.notifier.pending()
        directory = self.state_file.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{self.state_file.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.state_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise

    def _load(self) -> None:
        assert self.state_file is not None
        data = json.loads(self.state_file.read_text(encoding="utf-8"))
        with self.state.lock:
            self.state.load_json(data)
        for item in data.get("pending_notifications", []):
            self.notifier.enqueue(item["method"], item["payload"])
        logger.info("loaded state from %s", self.state_file)
