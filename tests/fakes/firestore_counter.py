"""A Firestore client on the emulator that counts billed reads and writes at the gRPC level.

The count is taken on the wire, under the official client, the way Firestore bills: a
document returned by a get or a query is one read, a query answering nothing is one read, an
aggregation is one read, each write of a commit is one write; `deletes` counts the deletes
among those writes, which Firestore bills apart (writes - deletes are billed as writes). The
client offers no transport seam, so the channel it builds for the emulator is wrapped with an
interceptor (the client's own `_emulator_channel` hook: a library method, not our code under
test).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud import firestore


@dataclass
class Counts:
    reads: int = 0
    writes: int = 0  # every write of a commit, deletes included
    deletes: int = 0  # the deletes among `writes`
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, reads: int = 0, writes: int = 0, deletes: int = 0) -> None:
        with self._lock:
            self.reads += reads
            self.writes += writes
            self.deletes += deletes

    def reset(self) -> None:
        with self._lock:
            self.reads = self.writes = self.deletes = 0


def _method(details: grpc.ClientCallDetails) -> str:
    name = details.method
    return (name.decode() if isinstance(name, bytes) else name).rsplit("/", 1)[-1]


class _CountingStream:
    """Passes a server stream through, counting reads as responses arrive.

    Counted per response, not at the end: the client stops reading a get's stream as soon as
    it has its document. An answer without any document still bills one read.
    """

    def __init__(self, call: Any, counts: Counts, count_one: Callable[[Any], int]) -> None:
        self._call = call
        self._counts = counts
        self._count_one = count_one
        self._billed = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        response = next(self._call)
        reads = self._count_one(response)
        if reads == 0 and not self._billed:
            reads = 1
        if reads:
            self._billed = True
            self._counts.add(reads=reads)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class CountingInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, counts: Counts) -> None:
        self._counts = counts

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = _method(details)
        if method == "Commit":
            deletes = sum(
                1 for write in request.writes if write._pb.WhichOneof("operation") == "delete"
            )
            self._counts.add(writes=len(request.writes), deletes=deletes)
        elif method == "GetDocument":
            self._counts.add(reads=1)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        call = continuation(details, request)
        method = _method(details)
        if method == "BatchGetDocuments":
            return _CountingStream(
                call, self._counts, lambda r: 1 if r._pb.WhichOneof("result") else 0
            )
        if method == "RunQuery":
            return _CountingStream(
                call, self._counts, lambda r: 1 if r._pb.HasField("document") else 0
            )
        if method == "RunAggregationQuery":
            return _CountingStream(call, self._counts, lambda r: 0)
        return call


class CountingClient(firestore.Client):
    """`firestore.Client` whose every RPC to the emulator is counted in `counts`."""

    def __init__(self, counts: Counts, **kwargs: Any) -> None:
        self.counts = counts
        super().__init__(**kwargs)

    def _emulator_channel(self, transport: Any) -> grpc.Channel:
        return grpc.intercept_channel(
            super()._emulator_channel(transport), CountingInterceptor(self.counts)
        )
