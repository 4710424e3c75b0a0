"""Upgrade rows written with older schema versions to the current one."""

from __future__ import annotations

from typing import Any

from schemas.sample import SCHEMA_VERSION


class SchemaVersionError(ValueError):
    """A row was written by a newer mifg than this one."""


def upgrade_row(row: dict[str, Any]) -> dict[str, Any]:
    """Return `row` upgraded to SCHEMA_VERSION; raise if it is from the future."""
    version = int(row.get("schema_version") or 1)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"row {row.get('id', '?')} has schema_version {version}; this mifg reads <= {SCHEMA_VERSION}"
        )
    if version == 1:
        # 2 added per-agent usage parts, the verifier's votes and the critic's probes: empty in old rows
        prov = row.get("provenance") or {}
        for key, fill in (("usage", {"parts": []}), ("verifier", {"votes": []}), ("critic", {"probes": []})):
            part = prov.get(key)
            if isinstance(part, dict):
                for k, v in fill.items():
                    if part.get(k) is None:
                        part[k] = v
        version = 2
    row["schema_version"] = SCHEMA_VERSION
    return row
