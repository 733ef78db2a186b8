"""Sandboxes in the metadata database (containerd's sandbox ``Store``)."""

from __future__ import annotations

import builtins
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs, filters, namespaces
from pycontainerd.core.metadata.containers import (
    Runtime,
    TypedValue,
    read_extensions,
    typed_from_row,
    write_extensions,
)
from pycontainerd.core.metadata.db import (
    DB,
    Tx,
    labels_from_db,
    labels_to_db,
    now,
    ts_from_db,
    ts_to_db,
)
from pycontainerd.core.metadata.validation import validate_identifier, validate_labels


def _typed(value: Any) -> TypedValue | None:
    if value is None:
        return None
    return (str(value[0]), bytes(value[1]))


def _extensions(value: Mapping[str, TypedValue] | None) -> dict[str, TypedValue]:
    return {k: _typed(v) for k, v in (value or {}).items()}  # type: ignore[misc]


def _labels(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class Sandbox:
    id: str
    runtime: Runtime = attrs.field(factory=Runtime)
    spec: TypedValue | None = attrs.field(default=None, converter=_typed)
    labels: dict[str, str] = attrs.field(factory=dict, converter=_labels)
    extensions: dict[str, TypedValue] = attrs.field(factory=dict, converter=_extensions)
    sandboxer: str = ""
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None


def _validate(s: Sandbox) -> None:
    try:
        validate_identifier(s.id)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"invalid sandbox id: {exc}") from None
    validate_labels(s.labels, "sandbox.labels")
    for k in s.extensions:
        if not k:
            raise errdefs.InvalidArgument("sandbox.extensions keys must not be zero-length")


def _read(tx: Tx, namespace: str, r: object) -> Sandbox:
    return Sandbox(
        id=r["id"],  # type: ignore[index]
        runtime=Runtime(
            name=r["runtime_name"],  # type: ignore[index]
            options=typed_from_row(r["runtime_options_type"], r["runtime_options"]),  # type: ignore[index]
        ),
        spec=typed_from_row(r["spec_type"], r["spec"]),  # type: ignore[index]
        labels=labels_from_db(r["labels"]),  # type: ignore[index]
        extensions=read_extensions(tx, namespace, "sandbox", r["id"]),  # type: ignore[index]
        sandboxer=r["sandboxer"],  # type: ignore[index]
        created_at=ts_from_db(r["created_at"]),  # type: ignore[index]
        updated_at=ts_from_db(r["updated_at"]),  # type: ignore[index]
    )


def _write(tx: Tx, namespace: str, s: Sandbox, *, insert: bool) -> None:
    opts = s.runtime.options
    params = (
        labels_to_db(s.labels),
        s.runtime.name,
        opts[0] if opts else None,
        opts[1] if opts else None,
        s.spec[0] if s.spec else None,
        s.spec[1] if s.spec else None,
        s.sandboxer,
        ts_to_db(s.created_at or now()),
        ts_to_db(s.updated_at or now()),
        namespace,
        s.id,
    )
    if insert:
        tx.execute(
            "INSERT INTO sandboxes(labels, runtime_name, runtime_options_type, runtime_options, "
            "spec_type, spec, sandboxer, created_at, updated_at, namespace, id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params,
        )
    else:
        tx.execute(
            "UPDATE sandboxes SET labels = ?, runtime_name = ?, runtime_options_type = ?, "
            "runtime_options = ?, spec_type = ?, spec = ?, sandboxer = ?, created_at = ?, "
            "updated_at = ? WHERE namespace = ? AND id = ?",
            params,
        )
    write_extensions(tx, namespace, "sandbox", s.id, s.extensions)


def adapt_sandbox(s: Sandbox) -> filters.FieldFn:
    def field(fieldpath: list[str]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        if fieldpath[0] == "id":
            return s.id, True
        if fieldpath[0] == "labels":
            return filters.adapt_labels(fieldpath[1:], s.labels)
        return "", False

    return field


@attrs.define(eq=False)
class SandboxStore:
    _db: DB

    async def create(self, sandbox: Sandbox) -> Sandbox:
        namespace = namespaces.required()
        t = now()
        created = attrs.evolve(sandbox, created_at=t, updated_at=t)
        try:
            _validate(created)
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(f"failed to validate sandbox: {exc}") from None

        def fn(tx: Tx) -> None:
            tx.ensure_namespace(namespace)
            if tx.one(
                "SELECT 1 FROM sandboxes WHERE namespace = ? AND id = ?", (namespace, sandbox.id)
            ):
                raise errdefs.AlreadyExists(f"sandbox {sandbox.id!r}: already exists")
            _write(tx, namespace, created, insert=True)

        await self._db.update(fn)
        return created

    async def get(self, id: str) -> Sandbox:  # noqa: A002
        namespace = namespaces.required()

        def fn(tx: Tx) -> Sandbox:
            row = tx.one("SELECT * FROM sandboxes WHERE namespace = ? AND id = ?", (namespace, id))
            if row is None:
                raise errdefs.NotFound(f"sandbox {id!r}: not found")
            return _read(tx, namespace, row)

        return await self._db.view(fn)

    async def list(self, filters_: Sequence[str] = ()) -> builtins.list[Sandbox]:
        namespace = namespaces.required()
        flt = filters.parse_all(list(filters_))

        def fn(tx: Tx) -> builtins.list[Sandbox]:
            rows = tx.all("SELECT * FROM sandboxes WHERE namespace = ? ORDER BY id", (namespace,))
            return [_read(tx, namespace, r) for r in rows]

        return [s for s in await self._db.view(fn) if flt.match(adapt_sandbox(s))]

    async def update(self, sandbox: Sandbox, fieldpaths: Sequence[str] = ()) -> Sandbox:
        """Update ``labels``, ``labels.<k>``, ``extensions``, ``extensions.<k>``, ``spec``,
        ``runtime``; all when ``fieldpaths`` is empty (then the runtime name is immutable)."""
        namespace = namespaces.required()

        def fn(tx: Tx) -> Sandbox:
            row = tx.one(
                "SELECT * FROM sandboxes WHERE namespace = ? AND id = ?", (namespace, sandbox.id)
            )
            if row is None:
                raise errdefs.NotFound(f"sandbox {sandbox.id!r}: not found")
            current = _read(tx, namespace, row)
            paths = list(fieldpaths)
            if not paths:
                paths = ["labels", "extensions", "spec", "runtime"]
                if current.runtime.name != sandbox.runtime.name:
                    raise errdefs.InvalidArgument("sandbox.runtime.name field is immutable")
            labels = dict(current.labels)
            extensions = dict(current.extensions)
            changes: dict[str, Any] = {}
            for path in paths:
                if path.startswith("labels."):
                    key = path[len("labels.") :]
                    if sandbox.labels.get(key):
                        labels[key] = sandbox.labels[key]
                    else:
                        labels.pop(key, None)
                elif path.startswith("extensions."):
                    key = path[len("extensions.") :]
                    if key in sandbox.extensions:
                        extensions[key] = sandbox.extensions[key]
                    else:
                        extensions.pop(key, None)
                elif path == "labels":
                    labels = dict(sandbox.labels)
                elif path == "extensions":
                    extensions = dict(sandbox.extensions)
                elif path == "runtime":
                    changes["runtime"] = sandbox.runtime
                elif path == "spec":
                    changes["spec"] = sandbox.spec
                else:
                    raise errdefs.InvalidArgument(
                        f"cannot update {path!r} field on sandbox {sandbox.id!r}"
                    )
            updated = attrs.evolve(
                current, labels=labels, extensions=extensions, updated_at=now(), **changes
            )
            _validate(updated)
            _write(tx, namespace, updated, insert=False)
            return updated

        return await self._db.update(fn)

    async def delete(self, id: str) -> None:  # noqa: A002
        namespace = namespaces.required()

        def fn(tx: Tx) -> None:
            cur = tx.execute(
                "DELETE FROM sandboxes WHERE namespace = ? AND id = ?", (namespace, id)
            )
            if cur.rowcount == 0:
                raise errdefs.NotFound(f"failed to delete sandbox {id!r}: not found")
            write_extensions(tx, namespace, "sandbox", id, {})
            tx.mark_dirty()

        await self._db.update(fn)
