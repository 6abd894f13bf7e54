"""Request validation: a request's rows checked against the model's schema, as numpy columns.

The schema comes with the registered model version (``loopline_request_schema.json`` in its
MLflow model directory, covered by the version's manifest: the versioned TFDV schema the
training data was validated against, as JSON; see components/validate_data). Columns the
model takes are required; other columns the schema knows are accepted, captured and not
used; anything else is an unknown column. Per column: the type (``float``, ``int``,
``string``), the range (``min`` / ``max``), the allowed ``values`` of a string column, and
whether a value may be missing (``nullable``: JSON null), NaN or infinite.

Two request shapes, both with named columns:

* V2 (Open Inference Protocol): one input per column, ``shape`` ``[n]`` or ``[n, 1]``,
  ``datatype`` FP64 / FP32 / INT* for numbers and BYTES for strings;
* V1: ``{"instances": [{"temp": 0.24, ...}, ...]}`` (one object per row).

Reserved, optional, per row: ``request_id`` (strings: each row's id, kept in the capture)
and ``event_time`` (ISO 8601 strings or epoch seconds: when the event happened; the capture
cuts its hours on it).

Every error is a :class:`RequestError`: an HTTP status (400, or 413 for a batch over the
limit) and a message that names the field (``column 'temp': ...``). Nothing here imports
kserve or pandas: it runs in every image and is unit-tested in the main env.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

SCHEMA_FORMAT = "loopline-request-schema-1"
TYPES = ("float", "int", "string")
RESERVED = ("request_id", "event_time")
NUMERIC_DATATYPES = {
    "FP64",
    "FP32",
    "INT64",
    "INT32",
    "INT16",
    "INT8",
    "UINT64",
    "UINT32",
    "UINT16",
    "UINT8",
}
INT_DATATYPES = NUMERIC_DATATYPES - {"FP64", "FP32"}
DEFAULT_MAX_ROWS = 1000
# MLflow signature types -> ours (the fallback when a version carries no request schema).
_SIGNATURE_TYPES = {
    "double": "float",
    "float": "float",
    "long": "int",
    "integer": "int",
    "string": "string",
    "boolean": "int",
}


class RequestError(ValueError):
    """A request the model cannot take; ``status`` is the HTTP status, the message names the field."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid"):
        super().__init__(message)
        self.status = status
        self.kind = kind


class SchemaError(ValueError):
    """A request schema that cannot be used; the message names the column and the field."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    min: float | None = None
    max: float | None = None
    values: frozenset[str] | None = None
    nullable: bool = False
    allow_nan: bool = False
    allow_inf: bool = False


@dataclass
class Rows:
    """A validated request: the model's columns (and known extra columns) as 1-D arrays."""

    n: int
    columns: dict[str, np.ndarray]  # the model's inputs, in the model's order
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # known, unused by the model
    request_ids: list[str] | None = None  # per row, when the request carried them
    event_times: list[float | None] | None = None  # epoch seconds per row, when carried
    # A feature lookup request (``lookup``: the schema's ``lookup_entity`` is set and no model
    # input was sent): ``columns`` is empty until the store's values are filled in. The
    # entity per row when the request carried it (also in ``extras``, so it is captured).
    lookup: bool = False
    entities: list[str] | None = None


@dataclass(frozen=True)
class RequestSchema:
    """What a request must look like: the model's input columns, in order, and the known ones."""

    inputs: tuple[str, ...]
    columns: Mapping[str, Column]
    version: str = ""
    max_rows: int = DEFAULT_MAX_ROWS
    # The feature store's entity column (``city``) when the server can fetch features; empty:
    # off (the column is unknown and every model input is required, as before).
    lookup_entity: str = ""

    @classmethod
    def build(
        cls,
        inputs: Sequence[str],
        schema: Mapping | None,
        signature_types: Mapping[str, str] | None = None,
        *,
        allow_missing: bool = True,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> RequestSchema:
        """The request schema of a model.

        Args:
            inputs: The model's input columns, in order (``feature_names_in_``).
            schema: The version's request schema (parsed JSON), or None.
            signature_types: Column -> MLflow signature type, for columns the schema lacks.
            allow_missing: False when the model cannot take missing values (then no column
                is nullable, whatever the schema says).
            max_rows: The largest batch a request may carry.
        """
        columns: dict[str, Column] = {}
        version = ""
        if schema is not None:
            if schema.get("format") != SCHEMA_FORMAT or not isinstance(schema.get("columns"), dict):
                raise SchemaError(f"request schema is not a {SCHEMA_FORMAT} document")
            version = str(schema.get("schema_version", ""))
            for name, spec in schema["columns"].items():
                columns[name] = _column(name, spec, allow_missing)
        for name in inputs:
            if name in columns:
                continue
            sig = (signature_types or {}).get(name)
            if sig is None:
                raise SchemaError(
                    f"column {name!r}: the model takes it but neither its request schema nor its "
                    "signature describes it"
                )
            if sig not in _SIGNATURE_TYPES:
                raise SchemaError(f"column {name!r}: signature type {sig!r} is not supported")
            columns[name] = Column(name, _SIGNATURE_TYPES[sig])
        clash = [r for r in RESERVED if r in columns]
        if clash:
            raise SchemaError(f"column {clash[0]!r}: the name is reserved for the request")
        return cls(tuple(inputs), columns, version, max_rows)

    # ------------------------------------------------------------------ V2

    def from_v2(self, inputs: Sequence, parameters: Mapping | None = None) -> Rows:
        """Validates the inputs of a V2 request (kserve ``InferInput`` objects or dicts)."""
        if not inputs:
            raise RequestError("request has no inputs", kind="empty")
        raw: dict[str, tuple[str, list]] = {}
        n = None
        for item in inputs:
            name, datatype, shape, data = _v2_parts(item)
            if name in raw:
                raise RequestError(f"input {name!r} appears twice", kind="shape")
            if name not in self.columns and name not in RESERVED and name != self.lookup_entity:
                raise RequestError(
                    f"input {name!r} is not a column of the model's schema "
                    f"(the model takes {', '.join(self.inputs)})",
                    kind="unknown_column",
                )
            rows = _rows_of_shape(name, shape, len(data))
            if n is None:
                n = rows
            elif rows != n:
                raise RequestError(
                    f"input {name!r} has {rows} rows but the others have {n}", kind="shape"
                )
            raw[name] = (datatype, data)
        self._check_rows(n)
        missing = [c for c in self.inputs if c not in raw]
        lookup = self._lookup(missing)
        if missing and not lookup:
            raise RequestError(
                f"column {missing[0]!r} is required and missing"
                + (f" (also {', '.join(missing[1:])})" if len(missing) > 1 else "")
                + self._lookup_hint(),
                kind="missing_column",
            )
        out = Rows(n=n, columns={})
        for name, (datatype, data) in raw.items():
            if name == "request_id":
                out.request_ids = _strings(name, datatype, data)
            elif name == self.lookup_entity:
                out.entities = _strings(name, datatype, data)
                out.extras[name] = np.array(out.entities, dtype=object)
            elif name == "event_time":
                out.event_times = [parse_event_time(name, v) for v in data]
            else:
                array = self._convert(self.columns[name], datatype, data)
                target = out.columns if name in self.inputs else out.extras
                target[name] = array
        out.lookup = lookup
        if not lookup:
            out.columns = {
                c: out.columns[c] for c in self.inputs
            }  # the model fills in its default entity, or refuses
        if out.event_times is None and parameters and "event_time" in parameters:
            out.event_times = [
                parse_event_time("parameters.event_time", parameters["event_time"])
            ] * n
        return out

    # ------------------------------------------------------------------ V1

    def from_v1(self, body) -> Rows:
        """Validates a V1 request: ``{"instances": [{column: value, ...}, ...]}``."""
        if not isinstance(body, Mapping):
            raise RequestError("request body must be a JSON object with 'instances'", kind="shape")
        instances = body.get("instances")
        if instances is None:
            raise RequestError("request body has no 'instances'", kind="shape")
        if not isinstance(instances, list):
            raise RequestError("'instances' must be a list of objects", kind="shape")
        self._check_rows(len(instances))
        names: list[str] = []
        seen: set[str] = set()
        for i, row in enumerate(instances):
            if not isinstance(row, Mapping):
                raise RequestError(
                    f"instances[{i}] must be an object of column: value "
                    f"(columns {', '.join(self.inputs)})",
                    kind="shape",
                )
            for key in row:
                if key not in seen:
                    seen.add(key)
                    names.append(key)
        for name in names:
            if name not in self.columns and name not in RESERVED and name != self.lookup_entity:
                raise RequestError(
                    f"column {name!r} is not a column of the model's schema "
                    f"(the model takes {', '.join(self.inputs)})",
                    kind="unknown_column",
                )
        missing = [c for c in self.inputs if c not in seen]
        lookup = self._lookup(missing)
        if missing and not lookup:
            raise RequestError(
                f"column {missing[0]!r} is required and missing" + self._lookup_hint(),
                kind="missing_column",
            )
        out = Rows(n=len(instances), columns={})
        for name in names:
            values = []
            for i, row in enumerate(instances):
                if name not in row and (name in self.inputs or name == self.lookup_entity):
                    raise RequestError(
                        f"column {name!r} is required and missing in instances[{i}]",
                        kind="missing_column",
                    )
                values.append(row.get(name))
            if name == "request_id":
                out.request_ids = _strings(name, "BYTES", values)
            elif name == self.lookup_entity:
                out.entities = _strings(name, "BYTES", values)
                out.extras[name] = np.array(out.entities, dtype=object)
            elif name == "event_time":
                out.event_times = [parse_event_time(name, v) for v in values]
            else:
                array = self._convert(self.columns[name], None, values)
                (out.columns if name in self.inputs else out.extras)[name] = array
        out.lookup = lookup
        if not lookup:
            out.columns = {c: out.columns[c] for c in self.inputs}
        if out.event_times is None and "event_time" in body:
            out.event_times = [parse_event_time("event_time", body["event_time"])] * out.n
        return out

    # ------------------------------------------------------------------ feature lookup

    def _lookup(self, missing: list[str]) -> bool:
        """True for a feature lookup request: lookup on and no model input given. A request
        with some inputs but not all is refused (the caller names the missing ones): the
        store fills a whole row or nothing, so a client value never mixes with the store's."""
        if not self.lookup_entity or not missing:
            return False
        return len(missing) == len(self.inputs)

    def _lookup_hint(self) -> str:
        if not self.lookup_entity:
            return ""
        return (
            f"; send every model input, or only the entity ({self.lookup_entity!r}) and the "
            "time (event_time) to have the features fetched from the feature store"
        )

    def complete(self, rows: Rows, values: Mapping[str, list], where: str) -> None:
        """Fills a lookup request's model inputs with the feature store's values, checked like
        a client's (type, range, allowed values); a value the schema refuses is a 422 naming
        the column and ``where`` (the entity and time it was fetched for)."""
        columns = {}
        for name in self.inputs:
            try:
                columns[name] = self._convert(self.columns[name], None, list(values[name]))
            except RequestError as exc:
                raise RequestError(
                    f"the feature store's value for {where}: {exc}",
                    status=422,
                    kind="feature_invalid",
                ) from None
        rows.columns = columns

    # ------------------------------------------------------------------ shared

    def _check_rows(self, n: int | None) -> None:
        if not n:
            raise RequestError("request has no rows (an empty batch)", kind="empty")
        if n > self.max_rows:
            raise RequestError(
                f"request has {n} rows; the limit is {self.max_rows} per request",
                status=413,
                kind="too_large",
            )

    def _convert(self, col: Column, datatype: str | None, data: list) -> np.ndarray:
        """One column's values, type- and range-checked, as a numpy array."""
        name = col.name
        if col.type == "string":
            if datatype is not None and datatype != "BYTES":
                raise RequestError(
                    f"column {name!r}: datatype {datatype}, but it holds strings (BYTES)",
                    kind="type",
                )
            values = _strings(name, "BYTES", data, nullable=col.nullable)
            if col.values is not None:
                for v in values:
                    if v is not None and v not in col.values:
                        raise RequestError(
                            f"column {name!r}: value {v!r} is not one of "
                            f"{', '.join(sorted(col.values))}",
                            kind="range",
                        )
            return np.array(values, dtype=object)
        if datatype is not None and datatype not in NUMERIC_DATATYPES:
            raise RequestError(
                f"column {name!r}: datatype {datatype}, but it holds numbers "
                f"({'INT64' if col.type == 'int' else 'FP64'})",
                kind="type",
            )
        nulls = False
        for v in data:
            t = type(v)
            if t is float or t is int:
                continue
            if v is None:
                if not col.nullable:
                    raise RequestError(
                        f"column {name!r}: a value is missing (null) and the column does not "
                        "allow missing values",
                        kind="missing_value",
                    )
                nulls = True
                continue
            raise RequestError(
                f"column {name!r}: {v!r} ({_json_type(v)}) where a number belongs",
                kind="type",
            )
        try:
            array = np.array(
                [math.nan if v is None else v for v in data] if nulls else data, dtype=np.float64
            )
        except OverflowError as exc:
            raise RequestError(f"column {name!r}: {exc}", kind="range") from None
        finite = np.isfinite(array)
        if not finite.all():
            nan = np.isnan(array)
            real_nan = np.array([v is not None and v != v for v in data]) if nulls else nan
            if real_nan.any() and not col.allow_nan:
                raise RequestError(f"column {name!r}: NaN is not allowed", kind="nan")
            if (~finite & ~nan).any() and not col.allow_inf:
                raise RequestError(f"column {name!r}: an infinite value is not allowed", kind="nan")
        if col.type == "int":
            whole = np.isnan(array) | (array == np.floor(array))
            if not whole.all():
                raise RequestError(
                    f"column {name!r}: takes whole numbers; got {array[~whole][0]!r}",
                    kind="type",
                )
            if not nulls and finite.all():
                array = array.astype(np.int64)
        if col.min is not None or col.max is not None:
            with np.errstate(invalid="ignore"):
                low = array < col.min if col.min is not None else np.zeros(len(array), bool)
                high = array > col.max if col.max is not None else np.zeros(len(array), bool)
            bad = np.flatnonzero(low | high)
            if bad.size:
                raise RequestError(
                    f"column {name!r}: value {array[bad[0]].item()!r} is outside its range "
                    f"[{_num(col.min, '-inf')}, {_num(col.max, 'inf')}]",
                    kind="range",
                )
        return array


def load_schema_file(data: bytes) -> dict:
    """The parsed request schema file (bytes as verified against the manifest)."""
    try:
        schema = json.loads(data)
    except ValueError as exc:
        raise SchemaError(f"request schema is not JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise SchemaError("request schema is not a JSON object")
    return schema


def _column(name: str, spec: Mapping, allow_missing: bool) -> Column:
    kind = spec.get("type")
    if kind not in TYPES:
        raise SchemaError(f"column {name!r}: type {kind!r} is not one of {', '.join(TYPES)}")
    values = spec.get("values")
    return Column(
        name=name,
        type=kind,
        min=spec.get("min"),
        max=spec.get("max"),
        values=frozenset(str(v) for v in values) if values is not None else None,
        nullable=bool(spec.get("nullable", False)) and allow_missing,
        allow_nan=bool(spec.get("allow_nan", False)) and allow_missing,
        allow_inf=bool(spec.get("allow_inf", False)),
    )


def _v2_parts(item) -> tuple[str, str, list, list]:
    if isinstance(item, Mapping):
        name, datatype, shape, data = (
            item.get("name"),
            item.get("datatype"),
            item.get("shape"),
            item.get("data"),
        )
    else:  # kserve InferInput
        name, datatype, shape = item.name, item.datatype, item.shape
        data = item.data
        if data is None or isinstance(data, np.ndarray) or not isinstance(data, list):
            try:
                data = item.as_numpy().reshape(-1).tolist()
            except Exception as exc:  # binary tensors kserve could not decode
                raise RequestError(
                    f"input {name!r}: cannot read its data ({exc})", kind="shape"
                ) from None
            if datatype == "BYTES":
                data = [v.decode() if isinstance(v, bytes) else v for v in data]
    if not isinstance(name, str) or not name:
        raise RequestError("an input has no name", kind="shape")
    if not isinstance(datatype, str):
        raise RequestError(f"input {name!r}: no datatype", kind="shape")
    if not isinstance(data, list):
        raise RequestError(f"input {name!r}: 'data' must be a list", kind="shape")
    if data and isinstance(data[0], list):  # row-major nested [[v], [v]] is allowed
        if not all(isinstance(v, list) and len(v) == 1 for v in data):
            raise RequestError(f"input {name!r}: one value per row is expected", kind="shape")
        data = [v[0] for v in data]
    return name, datatype.upper(), shape, data


def _rows_of_shape(name: str, shape, count: int) -> int:
    if not isinstance(shape, list | tuple) or not all(type(s) is int for s in shape):
        raise RequestError(f"input {name!r}: shape must be a list of integers", kind="shape")
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        if shape[0] != count:
            raise RequestError(
                f"input {name!r}: shape {list(shape)} does not match its {count} values",
                kind="shape",
            )
        return shape[0]
    raise RequestError(
        f"input {name!r}: shape {list(shape)}; one column per input is expected ([n] or [n, 1])",
        kind="shape",
    )


def _strings(name: str, datatype: str, data: list, nullable: bool = False) -> list:
    if datatype != "BYTES":
        raise RequestError(
            f"input {name!r}: datatype {datatype}, but it holds strings (BYTES)", kind="type"
        )
    out = []
    for v in data:
        if type(v) is str:
            out.append(v)
        elif v is None and nullable:
            out.append(None)
        elif v is None:
            raise RequestError(
                f"column {name!r}: a value is missing (null) and the column does not allow "
                "missing values",
                kind="missing_value",
            )
        else:
            raise RequestError(
                f"column {name!r}: {v!r} ({_json_type(v)}) where a string belongs", kind="type"
            )
    return out


def parse_event_time(name: str, value) -> float | None:
    if value is None:
        return None
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return when.timestamp()
    raise RequestError(
        f"{name}: {value!r} is not a time (ISO 8601, e.g. 2011-03-01T08:00:00Z, or epoch seconds)",
        kind="type",
    )


def _json_type(v) -> str:
    return {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}.get(
        type(v), type(v).__name__
    )


def _num(v, default: str) -> str:
    return default if v is None else f"{v:g}"
