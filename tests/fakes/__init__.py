"""Local stand-ins for the services the bridge talks to, speaking their real wire protocols.

`GrpcFake` is the common ground of the Google API fakes (`secret_manager`, `cloud_scheduler`):
an in-memory service served by a real `grpc.server` on a free local port, its RPCs decoded and
encoded with the official client package's own proto-plus types, so the official client runs
unchanged against it (serialisation, routing headers, retries, error mapping). RPCs a fake does
not implement answer UNIMPLEMENTED, as gRPC does for an unknown method.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any, Self

import grpc

SERVER_WORKERS = 8  # a hook may call back into the server while a call is being handled


class Abort(Exception):
    """Raised by an RPC implementation: the call ends with this gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class GrpcFake:
    """Base of a fake gRPC service; subclasses name the service and list their RPCs.

    Every RPC runs under one lock, so the state changes as one request at a time, like a
    strongly consistent service. `calls` records `(method, status code name)` in order.
    `run_once_before(method, hook)` lets a test act as a concurrent client at an exact point:
    the hook runs on the server thread, outside the lock, just before the next `method` call.
    """

    service = ""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.address = ""
        self.calls: list[tuple[str, str]] = []
        self._hooks: dict[str, Callable[[], None]] = {}
        self._server: grpc.Server | None = None
        self._channels: list[grpc.Channel] = []

    def rpcs(self) -> dict[str, tuple[Callable[[Any], Any], Any, Any]]:
        """`{method: (implementation, request type, response type)}`."""
        raise NotImplementedError

    def start(self) -> str:
        handlers = {
            method: self._handler(method, implementation, request_type, response_type)
            for method, (implementation, request_type, response_type) in self.rpcs().items()
        }
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=SERVER_WORKERS))
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(self.service, handlers),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        return self.address

    def stop(self) -> None:
        for channel in self._channels:
            channel.close()
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def channel(self) -> grpc.Channel:
        """A plain channel to this fake, closed when it stops."""
        channel = grpc.insecure_channel(self.address)
        self._channels.append(channel)
        return channel

    def run_once_before(self, method: str, hook: Callable[[], None]) -> None:
        self._hooks[method] = hook

    def _handler(
        self,
        method: str,
        implementation: Callable[[Any], Any],
        request_type: Any,
        response_type: Any,
    ) -> grpc.RpcMethodHandler:
        def serve(request: Any, context: grpc.ServicerContext) -> Any:
            hook = self._hooks.pop(method, None)
            if hook is not None:
                hook()
            try:
                with self.lock:
                    response = implementation(request)
            except Abort as abort:
                self.calls.append((method, abort.code.name))
                context.abort(abort.code, abort.message)
            self.calls.append((method, grpc.StatusCode.OK.name))
            return response

        # proto-plus types (the clients' own) or a plain protobuf type such as `Empty`.
        serialize = getattr(response_type, "serialize", None) or response_type.SerializeToString
        return grpc.unary_unary_rpc_method_handler(
            serve,
            request_deserializer=request_type.deserialize,
            response_serializer=serialize,
        )
