"""The Terraform providers' schemas as HashiCorp's CDKTF bindings carry them, and a check of
infra/terraform's `resource` and `data` blocks against them (tests/infra/test_terraform_schema.py).

`terraform validate` needs the provider, which cannot be downloaded here nor in CI. The CDKTF
bindings on PyPI (cdktf-cdktf-provider-google 16.12.1 is generated from google 6.50.0) ship a
jsii assembly: JSON describing, for every resource and data source, its config struct, whose
properties are the arguments (camelCase) and nested blocks (struct-typed properties), optional or
not. We read that JSON straight out of the wheel; the jsii runtime (node) is never imported.

The wheel (49 MB; installed with its runtime it would be 370 MB and 22 s of every venv build) is
pinned with its sha256 in infra/provider-schema-requirements.txt and downloaded once by
`make provider-schema` into .cache/provider-schema/. Reading its 99 MB assembly takes seconds and
half a gigabyte, so the part the check needs is kept beside the wheel (a few MB of JSON), keyed by
the wheel's sha256 and this module's source.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "infra" / "provider-schema-requirements.txt"
CACHE_DIR = ROOT / ".cache" / "provider-schema"
REFETCH = "run `rm -rf .cache/provider-schema && make provider-schema` (needs the network)"

# `name==version --hash=sha256:<hex>`, the only form the requirements file uses.
_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s]+)\s+--hash=sha256:(?P<sha256>[0-9a-f]{64})\s*$"
)
# The link every resource and data source class's summary carries, which names its Terraform type
# and the provider version the bindings were generated from.
_TYPE_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/(?P<source>[\w-]+/[\w-]+)/(?P<version>[^/]+)"
    r"/docs/(?P<kind>resources|data-sources)/\w+ (?P<type>\w+)\}"
)
# The link on each property: its anchor is the argument's Terraform name. camelCase does not
# always turn back into it (detect_md5hash is detectMd5Hash; `build` is buildAttribute).
_ARGUMENT_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/\S+#(?P<name>\w+) [\w.]+#\w+\}"
)
_RESOLVABLE = "cdktf.IResolvable"
_OPTIONS = hcl2.SerializationOptions(
    strip_string_quotes=True, explicit_blocks=True, with_comments=False
)
_IS_BLOCK = "__is_block__"


@dataclass(frozen=True)
class Requirement:
    name: str
    version: str
    sha256: str

    @property
    def wheel(self) -> Path:
        stem = re.sub(r"[-_.]+", "_", self.name)
        return CACHE_DIR / f"{stem}-{self.version}-py3-none-any.whl"


def requirements(path: Path = REQUIREMENTS) -> list[Requirement]:
    found = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _REQUIREMENT.match(line)
        assert match, f"{path.name}: not `name==version --hash=sha256:<hex>`: {line!r}"
        found.append(Requirement(**match.groupdict()))
    return found


# ---------------------------------------------------------------------------------------------
# The schema


@dataclass(frozen=True)
class Block:
    """A resource's, a data source's or a nested block's body: argument → required, and nested
    blocks."""

    arguments: dict[str, bool] = field(default_factory=dict)
    blocks: dict[str, NestedBlock] = field(default_factory=dict)


@dataclass(frozen=True)
class NestedBlock:
    required: bool
    # At most one such block (MaxItems 1: the bindings type it as a struct, not a list of them).
    single: bool
    body: Block


@dataclass(frozen=True)
class ProviderSchema:
    source: str  # "hashicorp/google"
    version: str  # of the provider the bindings were generated from
    resources: dict[str, Block]
    data_sources: dict[str, Block]
    provider: Block  # the `provider "google" {}` block's own arguments


def _struct_of(type_ref: dict[str, Any]) -> tuple[str, bool] | None:
    """(struct fqn, single) when the property is a nested block, else None."""
    if "fqn" in type_ref and type_ref["fqn"] != _RESOLVABLE:
        return type_ref["fqn"], True
    for option in type_ref.get("union", {}).get("types", []):
        collection = option.get("collection")
        if collection and collection["kind"] == "array" and "fqn" in collection["elementtype"]:
            return collection["elementtype"]["fqn"], False
    return None


def _terraform_name(prop: dict[str, Any]) -> str:
    docs = prop.get("docs", {})
    match = _ARGUMENT_LINK.search(f"{docs.get('summary', '')} {docs.get('remarks', '')}")
    if match:
        return match.group("name")
    # A dozen properties (none of this project's) have their docs cut before the link.
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", prop["name"]).lower()


def _block(types: dict[str, Any], fqn: str) -> Block:
    block = Block()
    for prop in types[fqn].get("properties", []):
        name = _terraform_name(prop)
        required = not prop.get("optional", False)
        struct = _struct_of(prop["type"])
        if struct is None:
            block.arguments[name] = required
        else:
            nested_fqn, single = struct
            block.blocks[name] = NestedBlock(required, single, _block(types, nested_fqn))
    return block


def schema_from_assembly(assembly: dict[str, Any]) -> ProviderSchema:
    types: dict[str, Any] = assembly["types"]
    resources: dict[str, Block] = {}
    data_sources: dict[str, Block] = {}
    versions: set[tuple[str, str]] = set()
    provider: Block | None = None
    for definition in types.values():
        if definition.get("base") == "cdktf.TerraformProvider":
            provider = _block(types, definition["initializer"]["parameters"][-1]["type"]["fqn"])
        if definition.get("base") not in ("cdktf.TerraformResource", "cdktf.TerraformDataSource"):
            continue
        link = _TYPE_LINK.search(definition["docs"]["summary"])
        assert link, definition["fqn"]
        versions.add((link.group("source"), link.group("version")))
        config = definition["initializer"]["parameters"][-1]
        assert config["name"] == "config", definition["fqn"]
        target = resources if link.group("kind") == "resources" else data_sources
        target[link.group("type")] = _block(types, config["type"]["fqn"])
    ((source, version),) = versions
    assert provider is not None, f"{source}: no provider class"
    return ProviderSchema(source, version, resources, data_sources, provider)


def _block_to_json(block: Block) -> dict[str, Any]:
    return {
        "a": block.arguments,
        "b": {
            name: [nested.required, nested.single, _block_to_json(nested.body)]
            for name, nested in block.blocks.items()
        },
    }


def _block_from_json(data: dict[str, Any]) -> Block:
    return Block(
        arguments=dict(data["a"]),
        blocks={
            name: NestedBlock(required, single, _block_from_json(body))
            for name, (required, single, body) in data["b"].items()
        },
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_assembly(wheel: Path) -> dict[str, Any]:
    """The jsii assembly (package/.jsii) of the npm tarball the wheel carries."""
    with zipfile.ZipFile(wheel) as archive:
        (tarball,) = [n for n in archive.namelist() if n.endswith(".jsii.tgz")]
        with archive.open(tarball) as packed, tarfile.open(fileobj=packed, mode="r|gz") as tar:
            for member in tar:
                if member.name == "package/.jsii":
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    assembly: dict[str, Any] = json.load(extracted)
                    return assembly
    raise AssertionError(f"{wheel.name}: no package/.jsii in {tarball}")


def load(requirement: Requirement) -> ProviderSchema:
    """The schema of the pinned bindings' wheel (`make provider-schema` downloads it), from the
    derived cache when that is still this wheel's and this code's."""
    wheel = requirement.wheel
    actual = _sha256(wheel)
    assert actual == requirement.sha256, (
        f"{wheel}: sha256 {actual}, pinned {requirement.sha256}: {REFETCH}"
    )
    key = f"{actual}:{hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}"
    derived = wheel.with_suffix(".schema.json")
    if derived.exists():
        cached = json.loads(derived.read_text())
        if cached["key"] == key:
            return ProviderSchema(
                cached["source"],
                cached["version"],
                {k: _block_from_json(v) for k, v in cached["resources"].items()},
                {k: _block_from_json(v) for k, v in cached["data_sources"].items()},
                _block_from_json(cached["provider"]),
            )
    schema = schema_from_assembly(read_assembly(wheel))
    partial = derived.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(
        json.dumps(
            {
                "key": key,
                "source": schema.source,
                "version": schema.version,
                "resources": {k: _block_to_json(v) for k, v in schema.resources.items()},
                "data_sources": {k: _block_to_json(v) for k, v in schema.data_sources.items()},
                "provider": _block_to_json(schema.provider),
            },
            separators=(",", ":"),
        )
    )
    partial.replace(derived)
    return schema


# ---------------------------------------------------------------------------------------------
# The check

# Meta-arguments Terraform itself handles, in any resource (and data source, but provisioner
# and connection).
_META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
_RESOURCE_META_BLOCKS = {"lifecycle", "provisioner", "connection"}
_DATA_META_BLOCKS = {"lifecycle"}
_LIFECYCLE_ARGUMENTS = {
    "resource": {
        "create_before_destroy",
        "prevent_destroy",
        "ignore_changes",
        "replace_triggered_by",
    },
    "data": set(),
}
_CONDITION_ARGUMENTS = {"condition", "error_message"}
_DYNAMIC_ARGUMENTS = {"for_each", "iterator", "labels", "content"}
_REFERENCE = re.compile(r"^\$\{(.*)\}$", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z_][\w-]*")


@dataclass(frozen=True)
class Declared:
    """A resource, data or provider block, and the provider (local name) it is served by."""

    file: str
    mode: str  # "resource", "data" or "provider"
    type: str  # the provider's local name for a provider block
    name: str  # its alias, if any, for a provider block
    body: dict[str, Any]
    provider: str  # local name, e.g. "google" or "google-beta"

    @property
    def address(self) -> str:
        if self.mode == "provider":
            return f"provider.{self.type}" + (f".{self.name}" if self.name else "")
        prefix = "data." if self.mode == "data" else ""
        return f"{prefix}{self.type}.{self.name}"


def _is_block(value: object) -> bool:
    # An empty list is an argument's value (`members = []`): a block is never an empty list.
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and item.get(_IS_BLOCK) for item in value)
    )


def _plain(value: object) -> str:
    text = str(value)
    match = _REFERENCE.match(text)
    return match.group(1) if match else text


def declared(path: Path, text: str | None = None) -> list[Declared]:
    """Every `resource`, `data` and `provider` block of one .tf file (or of the text given)."""
    parsed = hcl2.loads(path.read_text() if text is None else text, serialization_options=_OPTIONS)
    found = []
    for mode in ("resource", "data"):
        for entry in parsed.get(mode, []):
            for kind, named in entry.items():
                for name, body in named.items():
                    provider = _plain(body.get("provider", kind.split("_", 1)[0])).split(".")[0]
                    found.append(Declared(path.name, mode, kind, name, body, provider))
    for entry in parsed.get("provider", []):
        for local, body in entry.items():
            alias = _plain(body.get("alias", ""))
            found.append(Declared(path.name, "provider", local, alias, body, local))
    return found


def required_providers(paths: list[Path]) -> dict[str, str]:
    """Local provider name → source, from the `terraform { required_providers {} }` blocks."""
    found: dict[str, str] = {}
    for path in paths:
        parsed = hcl2.loads(path.read_text(), serialization_options=_OPTIONS)
        for terraform in parsed.get("terraform", []):
            for providers in terraform.get("required_providers", []):
                for local, spec in providers.items():
                    if local != _IS_BLOCK:
                        found[local] = spec["source"]
    return found


def _unknown(where: str, name: str, choices: set[str], what: str) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return f"{where}: unknown {what} `{name}`{hint}"


def _check_body(body: dict[str, Any], schema: Block, where: str, problems: list[str]) -> None:
    """Arguments and nested blocks of one body (a resource's below its meta-arguments, a nested
    block's, a dynamic block's content) against the schema's block."""
    dynamic_labels: set[str] = set()
    for dynamic in body.get("dynamic", []):
        for label, spec in dynamic.items():
            if label == _IS_BLOCK:
                continue
            dynamic_labels.add(label)
            inside = f'{where}: dynamic "{label}"'
            nested = schema.blocks.get(label)
            if nested is None:
                problems.append(
                    _unknown(where, label, set(schema.blocks), "nested block (dynamic)")
                )
                continue
            for key in set(spec) - _DYNAMIC_ARGUMENTS - {_IS_BLOCK}:
                problems.append(f"{inside}: `{key}` is not an argument of a dynamic block")
            if "for_each" not in spec:
                problems.append(f"{inside}: no for_each")
            contents = spec.get("content", [])
            if len(contents) != 1 or not _is_block(contents):
                problems.append(f"{inside}: needs exactly one content block")
                continue
            _check_body(contents[0], nested.body, f"{where}.{label}", problems)
    for key, value in body.items():
        if key in (_IS_BLOCK, "dynamic"):
            continue
        if key in schema.arguments:
            if _is_block(value):
                problems.append(f"{where}: `{key}` is an argument, written as a block")
        elif key in schema.blocks:
            nested = schema.blocks[key]
            if not _is_block(value):
                problems.append(f"{where}: `{key}` is a block, written as an argument (`{key} =`)")
                continue
            if nested.single and len(value) + (key in dynamic_labels) > 1:
                problems.append(f"{where}: at most one `{key}` block")
            for item in value:
                _check_body(item, nested.body, f"{where}.{key}", problems)
        else:
            problems.append(
                _unknown(where, key, set(schema.arguments) | set(schema.blocks), "argument")
            )
    for name, required in sorted(schema.arguments.items()):
        if required and name not in body:
            problems.append(f"{where}: missing required argument `{name}`")
    for name, nested in sorted(schema.blocks.items()):
        if nested.required and name not in body and name not in dynamic_labels:
            problems.append(f"{where}: missing required block `{name}`")


def _check_lifecycle(item: Declared, schema: Block, where: str, problems: list[str]) -> None:
    for lifecycle in item.body.get("lifecycle", []):
        allowed = _LIFECYCLE_ARGUMENTS[item.mode]
        for key, value in lifecycle.items():
            if key == _IS_BLOCK:
                continue
            if key in ("precondition", "postcondition") and _is_block(value):
                for condition in value:
                    missing = _CONDITION_ARGUMENTS - set(condition)
                    extra = set(condition) - _CONDITION_ARGUMENTS - {_IS_BLOCK}
                    if missing or extra:
                        problems.append(
                            f"{where}: lifecycle {key}: needs exactly"
                            f" {sorted(_CONDITION_ARGUMENTS)}"
                        )
            elif key not in allowed:
                problems.append(_unknown(f"{where}: lifecycle", key, allowed, "argument"))
        # ignore_changes names the resource's own arguments (`all` ignores every one).
        ignored = lifecycle.get("ignore_changes", [])
        if isinstance(ignored, list):
            settable = set(schema.arguments) | set(schema.blocks)
            for entry in ignored:
                match = _NAME.match(_plain(entry))
                if match and match.group(0) not in settable:
                    problems.append(
                        _unknown(
                            f"{where}: lifecycle ignore_changes",
                            match.group(0),
                            settable,
                            "argument",
                        )
                    )


def check(item: Declared, schema: ProviderSchema) -> list[str]:
    """What is wrong with one resource or data block, each problem naming its file, address and
    the argument or block path."""
    where = f"{item.file}: {item.address}"
    if item.mode == "provider":
        problems: list[str] = []
        _check_body(item.body, schema.provider, where, problems)
        return problems
    types = schema.resources if item.mode == "resource" else schema.data_sources
    block = types.get(item.type)
    if block is None:
        what = "resource type" if item.mode == "resource" else "data source"
        return [_unknown(where, item.type, set(types), f"{schema.source} {what}")]
    problems = []
    meta_blocks = _RESOURCE_META_BLOCKS if item.mode == "resource" else _DATA_META_BLOCKS
    if "count" in item.body and "for_each" in item.body:
        problems.append(f"{where}: count and for_each together")
    # A provider's own argument may share a meta-argument's name only under another CDKTF name
    # (`provider` → providerAttribute); Terraform keeps the meta-argument's meaning either way.
    body = {k: v for k, v in item.body.items() if k not in _META_ARGUMENTS | meta_blocks}
    _check_lifecycle(item, block, where, problems)
    _check_body(body, block, where, problems)
    return problems
