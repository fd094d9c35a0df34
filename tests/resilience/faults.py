"""Firestore faults on the wire: a client on the emulator whose next calls fail as gRPC fails.

`FaultyClient` is the official `firestore.Client` with its emulator channel wrapped by an
interceptor (the client's own `_emulator_channel` hook, as in `tests/fakes/firestore_counter`).
`client.faults.fail("Commit", times=2)` makes the next two Commit RPCs fail with UNAVAILABLE
before they reach the emulator, as a dropped connection does (`skip=1`: after letting one
through; `code=`: another status); `lose_reply=True` lets the
emulator apply the call and then fails it, as a connection cut after the server answered
does. The client's own retry policy sees exactly what it would see from a real network.
`client.faults.before("Commit", action)` runs `action` (another writer, on another client)
just before the next Commit is sent: a race lost at that very point, deterministically.
`client.faults.cut()` makes every later call fail before it is sent: the process using the
client is gone (killed), nothing it still tries reaches Firestore.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.cloud import firestore


class InjectedRpcError(grpc.RpcError, grpc.Call):
    """What a failed gRPC call gives: an `RpcError` that is also a `Call` with a status and,
    like grpc's own failed outcome, a `result()` that raises it."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> tuple:
        return ()

    def trailing_metadata(self) -> tuple:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False

    def result(self, timeout: float | None = None) -> Any:
        raise self


@dataclass
class _Fault:
    method: str
    skip: int
    remaining: int
    code: grpc.StatusCode
    lose_reply: bool


class FaultInjector(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Fails the next calls of a given RPC; records every RPC it saw, failed or not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._actions: list[tuple[str, Callable[[], object]]] = []
        self._cut: grpc.StatusCode | None = None
        self.calls: list[str] = []
        self.failed: list[str] = []

    def fail(
        self,
        method: str,
        *,
        times: int = 1,
        skip: int = 0,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        lose_reply: bool = False,
    ) -> None:
        with self._lock:
            self._faults.append(_Fault(method, skip, times, code, lose_reply))

    def before(self, method: str, action: Callable[[], object]) -> None:
        """Run `action` once, just before the next call of `method` is sent."""
        with self._lock:
            self._actions.append((method, action))

    def cut(self, code: grpc.StatusCode = grpc.StatusCode.CANCELLED) -> None:
        """Fail every call from now on, before it is sent (CANCELLED: not retried, so the
        process's remaining code runs at once, as if it had never run)."""
        with self._lock:
            self._cut = code

    @property
    def pending(self) -> int:
        """Failures announced but not injected yet."""
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def _take(self, method: str) -> _Fault | None:
        with self._lock:
            actions = [action for name, action in self._actions if name == method]
            self._actions = [(name, action) for name, action in self._actions if name != method]
        for action in actions:
            action()
        with self._lock:
            self.calls.append(method)
            if self._cut is not None:
                self.failed.append(method)
                return _Fault(method, 0, 0, self._cut, lose_reply=False)
            for fault in self._faults:
                if fault.method != method or fault.remaining == 0:
                    continue
                if fault.skip:
                    fault.skip -= 1
                    return None
                if fault.remaining > 0:
                    fault.remaining -= 1
                    self.failed.append(method)
                    return fault
        return None

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        fault = self._take(_method(details))
        if fault is None:
            return continuation(details, request)
        if fault.lose_reply:
            continuation(details, request).result()  # the server applies it ...
        return InjectedRpcError(fault.code, f"injected: {fault.method} failed")  # ... not heard

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        fault = self._take(_method(details))
        if fault is None:
            return continuation(details, request)
        if fault.lose_reply:
            list(continuation(details, request))
        raise InjectedRpcError(fault.code, f"injected: {fault.method} failed")


def _method(details: grpc.ClientCallDetails) -> str:
    name = details.method
    return (name.decode() if isinstance(name, bytes) else name).rsplit("/", 1)[-1]


class FaultyClient(firestore.Client):
    """`firestore.Client` on the emulator whose calls `faults` can make fail."""

    def __init__(self, **kwargs: Any) -> None:
        self.faults = FaultInjector()
        super().__init__(**kwargs)

    def _emulator_channel(self, transport: Any) -> grpc.Channel:
        return grpc.intercept_channel(super()._emulator_channel(transport), self.faults)
