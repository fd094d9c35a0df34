"""Command line of the Google source, for checking the decoding against independent data.

    python -m shared.sources.google decode --owner-key <hex> <file>

reads a serialized `DeviceUpdate` (raw bytes; `--encoding hex|base64` for text dumps, such as the
FCM payload, which is base64) and prints a JSON array of its locations, in report order (network
reports first, then the recent location), each with `latitude`, `longitude`, `altitude`,
`accuracy`, `timestamp`, `status` and `is_own_report`. Semantic reports have no coordinates and
are not locations: they, and reports skipped as undecryptable, are noted on stderr. Bad input or a
wrong key exits with status 1 and one line on stderr.

    python -m shared.sources.google devices <file>

reads a saved `nbe_list_devices` answer (raw protobuf; `--encoding` as above) and prints a JSON
array of its devices, each with `id` (the canonic id), `name`, `kind` (`tracker` or `phone`) and
`model`: what the bridge will list, so a user can check what the account returns.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.sources.google.client import parse_device_list
from shared.sources.google.crypto import parse_owner_key
from shared.sources.google.decode import decode_device_update
from shared.sources.google.errors import GoogleSourceError

EXIT_FAILURE = 1


def _read_payload(path: Path, encoding: str) -> bytes:
    data = path.read_bytes()
    if encoding == "raw":
        return data
    try:
        if encoding == "hex":
            return bytes.fromhex(data.decode("ascii"))
        return base64.b64decode(data.strip(), validate=True)
    except (UnicodeDecodeError, ValueError, binascii.Error):
        raise GoogleSourceError(f"{path} is not {encoding} text") from None


def _decode(arguments: argparse.Namespace) -> int:
    owner_key = parse_owner_key(arguments.owner_key)
    update = decode_device_update(_read_payload(arguments.file, arguments.encoding), owner_key)
    for report in update.semantic:
        print(f"note: semantic report {report.name!r} has no coordinates", file=sys.stderr)
    for failure in update.skipped:
        print(f"warning: skipped {failure}", file=sys.stderr)
    print(json.dumps([report.model_dump() for report in update.reports], indent=2))
    return 0


def _devices(arguments: argparse.Namespace) -> int:
    devices = parse_device_list(_read_payload(arguments.file, arguments.encoding))
    print(json.dumps([device.model_dump() for device in devices], indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.sources.google")
    commands = parser.add_subparsers(dest="command", required=True)
    decode = commands.add_parser("decode", help="decrypt the locations of a DeviceUpdate")
    decode.add_argument("--owner-key", required=True, help="the account's owner key, hex")
    decode.add_argument(
        "--encoding",
        choices=("raw", "hex", "base64"),
        default="raw",
        help="how the file holds the DeviceUpdate (default: raw protobuf bytes)",
    )
    decode.add_argument("file", type=Path, help="file holding a serialized DeviceUpdate")
    devices = commands.add_parser("devices", help="list the devices of a saved device list")
    devices.add_argument(
        "--encoding",
        choices=("raw", "hex", "base64"),
        default="raw",
        help="how the file holds the nbe_list_devices answer (default: raw protobuf bytes)",
    )
    devices.add_argument("file", type=Path, help="file holding a nbe_list_devices answer")
    arguments = parser.parse_args(argv)
    try:
        return _devices(arguments) if arguments.command == "devices" else _decode(arguments)
    except GoogleSourceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot read {arguments.file}: {exc.strerror}", file=sys.stderr)
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
