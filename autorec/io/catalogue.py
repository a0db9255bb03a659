"""The segment catalogue: one Parquet file per rig and UTC day, one row per segment (pyarrow).

Each row is the segment's `index.jsonl` line, typed (times as UTC timestamps, counts as
integers, rules as a list), plus where its files are in the store (`key`, `sidecar_key`,
`video_keys`) and the SHA-256 of its log. `rig` and `date` are not columns: they are the hive
partitions of the catalogue's key (`rig=NAME/date=YYYY-MM-DD/segments.parquet`), which DuckDB,
pyarrow and Spark read as columns.

Contract: `to_parquet(rows)` -> bytes (rows sorted by start; a missing or mistyped field is null,
never an error); `read_rows(data)` -> list of dicts with epoch-second floats for the times.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
from collections.abc import Iterable, Mapping
from typing import Any


def schema():
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("name", pa.string()),
            ("start", ts),
            ("end", ts),
            ("duration_s", pa.float64()),
            ("rules", pa.list_(pa.string())),
            ("records", pa.int64()),
            ("bytes", pa.int64()),
            ("close_reason", pa.string()),
            ("part", pa.int32()),
            ("recovered", pa.bool_()),
            ("gaps", pa.int64()),
            ("dropped", pa.int64()),
            ("path", pa.string()),
            ("sidecar", pa.string()),
            ("key", pa.string()),
            ("sidecar_key", pa.string()),
            ("video_keys", pa.list_(pa.string())),
            ("sha256", pa.string()),
            ("uploaded", ts),
        ]
    )


def _time(v: Any) -> _dt.datetime | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return _dt.datetime.fromtimestamp(v, tz=_dt.timezone.utc)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _strs(v: Any) -> list[str] | None:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else None


def typed_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One catalogue row from an index line plus the upload fields (`key`, ..., `uploaded`)."""
    return {
        "name": _str(entry.get("name")),
        "start": _time(entry.get("start")),
        "end": _time(entry.get("end")),
        "duration_s": _float(entry.get("duration_s")),
        "rules": _strs(entry.get("rules")),
        "records": _int(entry.get("records")),
        "bytes": _int(entry.get("bytes")),
        "close_reason": _str(entry.get("close_reason")),
        "part": _int(entry.get("part")),
        "recovered": entry.get("recovered") if isinstance(entry.get("recovered"), bool) else None,
        "gaps": _int(entry.get("gaps")),
        "dropped": _int(entry.get("dropped")),
        "path": _str(entry.get("path")),
        "sidecar": _str(entry.get("sidecar")),
        "key": _str(entry.get("key")),
        "sidecar_key": _str(entry.get("sidecar_key")),
        "video_keys": _strs(entry.get("video_keys")) or [],
        "sha256": _str(entry.get("sha256")),
        "uploaded": _time(entry.get("uploaded")),
    }


def to_parquet(entries: Iterable[Mapping[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted((typed_row(e) for e in entries), key=lambda r: (r["start"] is None, r["start"] or 0, r["name"] or ""))
    table = pa.Table.from_pylist(rows, schema=schema())
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def read_rows(data: bytes) -> list[dict[str, Any]]:
    """A catalogue's rows, times as epoch seconds (float)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # ParquetFile, not read_table: read_table goes through pyarrow.dataset (acero, the S3 filesystem
    # layer), after which about 1 process in 30 aborted at exit ("terminate called without an active
    # exception"; 4 in 180 runs of `autorec ls s3://...`, 0 in 120 this way). Times as integers, then
    # epoch seconds: no tz-aware datetimes to build.
    table = pq.ParquetFile(pa.BufferReader(data), pre_buffer=False).read(use_threads=False)
    times = [name for name, kind in zip(table.column_names, table.schema.types) if pa.types.is_timestamp(kind)]
    for name in times:
        i = table.column_names.index(name)
        micros = table.column(name).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        table = table.set_column(i, name, micros)
    rows = table.to_pylist()
    for row in rows:
        for name in times:
            if row.get(name) is not None:
                row[name] = row[name] / 1e6
    return rows


def store_rows(store: Any, rigs: list[str], t0: float | None, t1: float | None) -> tuple[list[dict], list[str]]:
    """Every catalogue row under the store's prefix (with `rig` and `date`), pruned by day, and the problems
    (a damaged catalogue is a problem, not an error). `store` is an `autorec.io.objectstore.ObjectStore`;
    `rigs` empty: every rig. Raises StoreError when the store cannot be listed (`ls s3://`, the lab page)."""
    from autorec.io.storelayout import CATALOGUE_NAME, parse_partitions, rig_prefix, utc_day

    prefixes = [rig_prefix(store.location.prefix, r) + "/" for r in rigs] or [
        store.location.prefix + "/" if store.location.prefix else ""
    ]
    first = (_dt.date.fromisoformat(utc_day(t0)) - _dt.timedelta(days=1)).isoformat() if t0 is not None else None
    last = utc_day(t1) if t1 is not None else None
    rows: list[dict] = []
    problems: list[str] = []
    for prefix in prefixes:
        for key, _size in store.list_keys(prefix):
            if not key.endswith("/" + CATALOGUE_NAME):
                continue
            parts = parse_partitions(key)
            day = parts.get("date", "")
            if (first and day < first) or (last and day > last):
                continue
            try:
                found = read_rows(store.get_bytes(key))
            except Exception as exc:  # a damaged catalogue must not hide the others
                problems.append(f"{key}: cannot read: {exc}")
                continue
            for row in found:
                row["rig"], row["date"] = parts.get("rig"), day
                rows.append(row)
    rows.sort(key=lambda r: (r.get("start") or 0, r.get("rig") or ""))
    return rows, problems
