"""Protobuf messages of Google Find My Device: our own `.proto` files and their generated modules.

The `*_pb2.py` / `*_pb2.pyi` files are generated and checked in; regenerate with `make protos`.
"""
