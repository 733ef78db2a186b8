"""The snapshotter conformance suite: every snapshotter, ours or a third party's, local or
behind a proxy, runs these same cases.

A case is an ``async`` function taking a :class:`Env` (the snapshotter under test, made by a
factory, plus helpers). Cases mount what snapshotters return, so the suite needs root.

With pytest::

    from pycontainerd.core.snapshots import testsuite

    @pytest.mark.root
    @pytest.mark.parametrize("case", testsuite.CASES, ids=testsuite.case_id)
    async def test_conformance(case, tmp_path):
        await testsuite.run(case, factory, str(tmp_path))

``factory`` is ``async (root: str) -> Snapshotter``; it is called again with the same root to
test that a re-opened snapshotter keeps everything. A case that cannot apply (say, crash
leftovers for a snapshotter whose data is not on this host) raises :class:`CaseSkipped`, which
:func:`run` turns into ``pytest.skip`` when pytest is running.

This module does not import pytest: it is shipped so that third-party snapshotters can be
checked too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.mount import Mount, with_temp_mount
from pycontainerd.core.snapshots import INHERITED_LABELS_PREFIX, Cleaner, Info, Kind, Snapshotter

Factory = Callable[[str], Awaitable[Snapshotter]]
#: where a local snapshotter keeps per-snapshot directories (for the crash-leftover case)
LeftoversDir = Callable[[str], str | None]


class CaseSkipped(Exception):
    """The case does not apply to this snapshotter."""


def default_leftovers_dir(root: str) -> str | None:
    """Layout of native and overlayfs: ``<root>/snapshots/<id>``."""
    return os.path.join(root, "snapshots")


@attrs.define(eq=False)
class Env:
    """What a case gets: the snapshotter under test and ways to re-open it."""

    root: str
    factory: Factory
    sn: Snapshotter
    leftovers_dir: LeftoversDir = default_leftovers_dir

    async def reopen(self) -> Snapshotter:
        await self.sn.close()
        self.sn = await self.factory(self.root)
        return self.sn


@attrs.frozen
class Case:
    name: str
    fn: Callable[[Env], Awaitable[None]]


CASES: list[Case] = []


def case_id(case: Case) -> str:
    return case.name


def _case(fn: Callable[[Env], Awaitable[None]]) -> Callable[[Env], Awaitable[None]]:
    CASES.append(Case(name=fn.__name__, fn=fn))
    return fn


async def run(
    case: Case,
    factory: Factory,
    root: str,
    *,
    leftovers_dir: LeftoversDir = default_leftovers_dir,
) -> None:
    """Run one case against a fresh snapshotter made by ``factory`` in ``root``."""
    sn_root = os.path.join(root, "snapshotter")
    os.makedirs(sn_root, exist_ok=True)
    env = Env(sn_root, factory, await factory(sn_root), leftovers_dir)
    try:
        await case.fn(env)
    except CaseSkipped as e:
        try:
            import pytest
        except ImportError:
            raise e from None
        pytest.skip(str(e))
    finally:
        await env.sn.close()


# --------------------------------------------------------------------------- helpers

DIR = object()  # marker: a directory in an expected tree


@contextlib.asynccontextmanager
async def _raises(*classes: type[BaseException]) -> AsyncIterator[None]:
    try:
        yield
    except classes:
        return
    except BaseException as e:
        raise AssertionError(f"expected {[c.__name__ for c in classes]}, got {e!r}") from e
    raise AssertionError(f"expected {[c.__name__ for c in classes]}, nothing was raised")


async def _apply(mounts: list[Mount], changes: Mapping[str, Any]) -> None:
    """Mount and apply ``changes``: path -> bytes (write file), DIR (mkdir), None (delete),
    ("symlink", target)."""

    def run(root: str) -> None:
        for rel, value in changes.items():
            path = os.path.join(root, rel)
            if value is None:
                if os.path.isdir(path) and not os.path.islink(path):
                    import shutil

                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            elif value is DIR:
                os.makedirs(path, exist_ok=True)
            elif isinstance(value, tuple) and value[0] == "symlink":
                os.symlink(value[1], path)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(value)

    async with with_temp_mount(mounts) as root:
        await asyncio.to_thread(run, root)


def _tree_sync(root: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = DIR
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    out[rel] = f.read()
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode))
    return out


async def _tree(mounts: list[Mount]) -> dict[str, Any]:
    async with with_temp_mount(mounts) as root:
        return await asyncio.to_thread(_tree_sync, root)


def _own(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels without those a snapshotter may add itself (``containerd.io/snapshot/...``,
    e.g. overlayfs's upperdir label); the suite never sets such labels."""
    return {k: v for k, v in labels.items() if not k.startswith(INHERITED_LABELS_PREFIX)}


def _show(tree: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ("<dir>" if v is DIR else v) for k, v in sorted(tree.items())}


def _assert_tree(got: Mapping[str, Any], want: Mapping[str, Any], what: str) -> None:
    if dict(got) != dict(want):
        raise AssertionError(f"{what}: got {_show(got)}, want {_show(want)}")


async def _committed(sn: Snapshotter, name: str, parent: str, changes: Mapping[str, Any]) -> None:
    key = f"{name}-active"
    mounts = await sn.prepare(key, parent)
    await _apply(mounts, changes)
    await sn.commit(name, key)


async def _walk(sn: Snapshotter, filters: list[str] | None = None) -> list[str]:
    return sorted([i.name async for i in sn.walk(filters or [])])


# --------------------------------------------------------------------------- cases


@_case
async def prepare_without_parent_gives_empty_writable_active(env: Env) -> None:
    sn = env.sn
    mounts = await sn.prepare("a", labels={"l": "v"})
    assert mounts, "prepare returned no mounts"
    _assert_tree(await _tree(mounts), {}, "new active snapshot")
    await _apply(mounts, {"f": b"hello", "d": DIR, "d/g": b"x"})
    _assert_tree(await _tree(mounts), {"f": b"hello", "d": DIR, "d/g": b"x"}, "after writes")
    info = await sn.stat("a")
    assert info.name == "a" and info.kind is Kind.ACTIVE and info.parent == ""
    assert _own(info.labels) == {"l": "v"}, info.labels
    assert info.created_at.tzinfo is not None and info.created_at <= info.updated_at
    again = await sn.mounts("a")
    _assert_tree(await _tree(again), {"f": b"hello", "d": DIR, "d/g": b"x"}, "mounts() of a")


@_case
async def commit_makes_files_visible_to_children_and_drops_the_active_key(env: Env) -> None:
    sn = env.sn
    mounts = await sn.prepare("a")
    await _apply(mounts, {"etc": DIR, "etc/hosts": b"127.0.0.1 localhost\n"})
    await sn.commit("base", "a", labels={"k": "v"})
    async with _raises(errdefs.NotFound):
        await sn.stat("a")
    info = await sn.stat("base")
    assert info.kind is Kind.COMMITTED and info.parent == "" and _own(info.labels) == {"k": "v"}
    child = await sn.prepare("c", "base")
    assert (await sn.stat("c")).parent == "base"
    want = {"etc": DIR, "etc/hosts": b"127.0.0.1 localhost\n"}
    _assert_tree(await _tree(child), want, "child of base")
    # the key of a committed active snapshot is free again
    await sn.prepare("a", "base")
    assert (await sn.stat("a")).kind is Kind.ACTIVE


@_case
async def layer_chain_shows_added_changed_and_deleted_files(env: Env) -> None:
    sn = env.sn
    await _committed(
        sn,
        "l1",
        "",
        {"a": b"a1", "b": b"b1", "d": DIR, "d/x": b"x1", "d/y": b"y1", "keep": b"k"},
    )
    await _committed(sn, "l2", "l1", {"a": b"a2", "b": None, "c": b"c2", "d/x": None})
    await _committed(sn, "l3", "l2", {"d": None, "b": b"b3", "link": ("symlink", "a")})
    await _committed(sn, "l4", "l3", {"d": DIR, "d/z": b"z4", "c": None})

    want: dict[str, dict[str, Any]] = {
        "l1": {"a": b"a1", "b": b"b1", "d": DIR, "d/x": b"x1", "d/y": b"y1", "keep": b"k"},
        "l2": {"a": b"a2", "c": b"c2", "d": DIR, "d/y": b"y1", "keep": b"k"},
        "l3": {"a": b"a2", "b": b"b3", "c": b"c2", "keep": b"k", "link": ("symlink", "a")},
        "l4": {
            "a": b"a2",
            "b": b"b3",
            "d": DIR,
            "d/z": b"z4",
            "keep": b"k",
            "link": ("symlink", "a"),
        },
    }
    for name, tree in want.items():
        _assert_tree(await _tree(await sn.view(f"view-{name}", name)), tree, f"view of {name}")
        _assert_tree(await _tree(await sn.prepare(f"act-{name}", name)), tree, f"active on {name}")
    # an active snapshot on top of the chain changes nothing below it
    top = await sn.mounts("act-l4")
    await _apply(top, {"a": None, "new": b"n"})
    _assert_tree(await _tree(await sn.mounts("view-l4")), want["l4"], "view after sibling writes")
    infos = {i.name: i for i in [await sn.stat(n) for n in ("l1", "l2", "l3", "l4")]}
    assert [infos[n].parent for n in ("l1", "l2", "l3", "l4")] == ["", "l1", "l2", "l3"]


@_case
async def layers_keep_modes_owners_links_and_special_files(env: Env) -> None:
    sn = env.sn
    mounts = await sn.prepare("a")

    def populate(root: str) -> None:
        p = os.path.join(root, "script")
        with open(p, "wb") as f:
            f.write(b"#!/bin/sh\n")
        os.chown(p, 1234, 5678)
        os.chmod(p, 0o4751)  # after chown, which clears set-id bits
        os.mkdir(os.path.join(root, "private"), 0o700)
        os.chown(os.path.join(root, "private"), 42, 43)
        os.chmod(os.path.join(root, "private"), 0o1700)
        os.link(p, os.path.join(root, "hardlink"))
        os.symlink("/does/not/exist", os.path.join(root, "dangling"))
        os.mkfifo(os.path.join(root, "fifo"))
        os.mknod(os.path.join(root, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.setxattr(p, "user.test", b"v")

    async with with_temp_mount(mounts) as root:
        try:
            await asyncio.to_thread(populate, root)
        except PermissionError as e:
            raise CaseSkipped(f"cannot create owners or device nodes here: {e}") from e
        except OSError as e:
            if e.errno != errno.ENOTSUP:
                raise
            # xattrs unsupported on this filesystem: the rest still counts
    await sn.commit("base", "a")

    def check(root: str) -> None:
        st = os.lstat(os.path.join(root, "script"))
        assert stat.S_IMODE(st.st_mode) == 0o4751, oct(st.st_mode)
        assert (st.st_uid, st.st_gid) == (1234, 5678)
        ds = os.lstat(os.path.join(root, "private"))
        assert stat.S_IMODE(ds.st_mode) == 0o1700 and (ds.st_uid, ds.st_gid) == (42, 43)
        hl = os.lstat(os.path.join(root, "hardlink"))
        assert hl.st_ino == st.st_ino, "hard link was not kept"
        assert os.readlink(os.path.join(root, "dangling")) == "/does/not/exist"
        assert stat.S_ISFIFO(os.lstat(os.path.join(root, "fifo")).st_mode)
        nst = os.lstat(os.path.join(root, "null"))
        assert stat.S_ISCHR(nst.st_mode) and nst.st_rdev == os.makedev(1, 3)
        try:
            assert os.getxattr(os.path.join(root, "script"), "user.test") == b"v"
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.ENODATA):
                raise

    for key in ("child", "v"):
        mounts = await (sn.prepare if key == "child" else sn.view)(key, "base")
        async with with_temp_mount(mounts) as root:
            await asyncio.to_thread(check, root)


@_case
async def views_are_read_only_and_cannot_be_committed(env: Env) -> None:
    sn = env.sn
    await _committed(sn, "base", "", {"f": b"1"})
    await _committed(sn, "top", "base", {"g": b"2"})
    for key, parent, want in (
        ("v0", "", {}),
        ("v1", "base", {"f": b"1"}),
        ("v2", "top", {"f": b"1", "g": b"2"}),
    ):
        mounts = await sn.view(key, parent)
        info = await sn.stat(key)
        assert info.kind is Kind.VIEW and info.parent == parent, info
        _assert_tree(await _tree(mounts), want, f"view {key}")
        async with with_temp_mount(mounts) as root:
            try:
                with open(os.path.join(root, "new"), "wb"):
                    pass
            except OSError as e:
                assert e.errno in (errno.EROFS, errno.EACCES, errno.EPERM), e
            else:
                raise AssertionError(f"view {key} on {parent!r} is writable")
        async with _raises(errdefs.FailedPrecondition):
            await sn.commit(f"{key}-committed", key)
        assert (await sn.stat(key)).kind is Kind.VIEW
    # a view's mounts can be asked for again
    _assert_tree(await _tree(await sn.mounts("v2")), {"f": b"1", "g": b"2"}, "mounts() of v2")


@_case
async def active_and_view_snapshots_cannot_be_parents(env: Env) -> None:
    sn = env.sn
    await sn.prepare("active")
    await sn.view("view")
    for parent in ("active", "view"):
        async with _raises(errdefs.InvalidArgument, errdefs.FailedPrecondition):
            await sn.prepare(f"on-{parent}", parent)
        async with _raises(errdefs.InvalidArgument, errdefs.FailedPrecondition):
            await sn.view(f"view-on-{parent}", parent)
        async with _raises(errdefs.NotFound):
            await sn.stat(f"on-{parent}")
    assert await _walk(sn) == ["active", "view"]


@_case
async def missing_keys_and_parents_are_not_found(env: Env) -> None:
    sn = env.sn
    async with _raises(errdefs.NotFound):
        await sn.prepare("k1", "nope")
    async with _raises(errdefs.NotFound):
        await sn.view("k2", "nope")
    async with _raises(errdefs.NotFound):
        await sn.commit("name", "nope")
    async with _raises(errdefs.NotFound):
        await sn.stat("nope")
    async with _raises(errdefs.NotFound):
        await sn.mounts("nope")
    async with _raises(errdefs.NotFound):
        await sn.remove("nope")
    async with _raises(errdefs.NotFound):
        await sn.usage("nope")
    async with _raises(errdefs.NotFound):
        await sn.update(Info(name="nope", labels={"a": "b"}))
    assert await _walk(sn) == [], "failed calls left snapshots behind"


@_case
async def duplicate_keys_and_names_already_exist(env: Env) -> None:
    sn = env.sn
    await _committed(sn, "base", "", {"f": b"1"})
    await sn.prepare("k")
    async with _raises(errdefs.AlreadyExists):
        await sn.prepare("k")
    async with _raises(errdefs.AlreadyExists):
        await sn.view("k", "base")
    async with _raises(errdefs.AlreadyExists):
        await sn.prepare("base")
    await sn.prepare("k2", "base")
    async with _raises(errdefs.AlreadyExists):
        await sn.commit("base", "k2")
    async with _raises(errdefs.AlreadyExists):
        await sn.commit("k", "k2")
    # the refused commit left k2 active and usable
    assert (await sn.stat("k2")).kind is Kind.ACTIVE
    _assert_tree(await _tree(await sn.mounts("k2")), {"f": b"1"}, "k2 after refused commit")
    assert await _walk(sn) == ["base", "k", "k2"]


@_case
async def committed_snapshots_have_no_mounts(env: Env) -> None:
    sn = env.sn
    await _committed(sn, "base", "", {"f": b"1"})
    async with _raises(errdefs.FailedPrecondition, errdefs.NotFound):
        await sn.mounts("base")
    async with _raises(errdefs.FailedPrecondition):
        await sn.commit("again", "base")


@_case
async def removing_a_parent_with_children_is_refused(env: Env) -> None:
    sn = env.sn
    await _committed(sn, "base", "", {"f": b"1"})
    await _committed(sn, "mid", "base", {"g": b"2"})
    await sn.prepare("leaf", "mid")
    await sn.view("look", "base")
    for key in ("base", "mid"):
        async with _raises(errdefs.FailedPrecondition):
            await sn.remove(key)
    # nothing was lost by the refusals
    _assert_tree(await _tree(await sn.mounts("leaf")), {"f": b"1", "g": b"2"}, "leaf")
    await sn.remove("leaf")
    await sn.remove("mid")
    async with _raises(errdefs.FailedPrecondition):
        await sn.remove("base")  # the view still holds it
    await sn.remove("look")
    await sn.remove("base")
    assert await _walk(sn) == []
    async with _raises(errdefs.NotFound):
        await sn.stat("base")
    # removed keys can be used again
    mounts = await sn.prepare("base")
    _assert_tree(await _tree(mounts), {}, "re-created base")


@_case
async def remove_deletes_active_view_and_committed_snapshots(env: Env) -> None:
    sn = env.sn
    await _committed(sn, "c", "", {"f": b"1"})
    await sn.prepare("a", "c")
    await sn.view("v", "c")
    await sn.remove("a")
    await sn.remove("v")
    await sn.remove("c")
    assert await _walk(sn) == []
    for key in ("a", "v", "c"):
        async with _raises(errdefs.NotFound):
            await sn.stat(key)


@_case
async def update_changes_only_the_named_label_paths(env: Env) -> None:
    sn = env.sn
    await sn.prepare("a", labels={"one": "1", "two": "2"})
    before = await sn.stat("a")
    await asyncio.sleep(0.01)
    got = await sn.update(Info(name="a", labels={"one": "uno", "two": "ignored"}), ["labels.one"])
    assert got.labels.get("one") == "uno" and got.labels.get("two") == "2", got.labels
    assert got.updated_at > before.updated_at
    assert got.created_at == before.created_at
    assert (await sn.stat("a")).labels == got.labels
    got = await sn.update(Info(name="a", labels={}), ["labels.two"])
    assert "two" not in got.labels and got.labels.get("one") == "uno", got.labels
    got = await sn.update(Info(name="a", labels={"three": "3"}), ["labels.three", "labels.x"])
    assert got.labels.get("three") == "3" and "x" not in got.labels, got.labels
    got = await sn.update(Info(name="a", labels={"only": "this"}))
    assert _own(got.labels) == {"only": "this"}, got.labels
    assert "one" not in got.labels and "three" not in got.labels, got.labels
    got = await sn.update(Info(name="a", labels={"all": "new"}), ["labels"])
    assert "only" not in got.labels and got.labels.get("all") == "new", got.labels
    async with _raises(errdefs.InvalidArgument):
        await sn.update(Info(name="a", parent="x"), ["parent"])
    async with _raises(errdefs.InvalidArgument):
        await sn.update(Info(name="a", kind=Kind.COMMITTED), ["kind"])
    info = await sn.stat("a")
    assert info.kind is Kind.ACTIVE and info.parent == "" and info.labels.get("all") == "new"


@_case
async def usage_counts_own_files_only(env: Env) -> None:
    sn = env.sn
    mounts = await sn.prepare("a")
    empty = await sn.usage("a")
    await _apply(mounts, {"big": b"x" * (1 << 20), "small": b"y"})
    grown = await sn.usage("a")
    assert grown.size >= empty.size + (1 << 20), (empty, grown)
    assert grown.inodes == empty.inodes + 2, (empty, grown)
    await sn.commit("base", "a")
    committed = await sn.usage("base")
    assert committed.size >= 1 << 20 and committed.inodes == grown.inodes, committed
    # (whether a child's usage includes its parent's files depends on the snapshotter: a
    # copying one like native cannot tell them apart)
    await sn.prepare("b", "base")
    assert (await sn.usage("b")).inodes >= 1


@_case
async def walk_filters_by_kind_name_parent_and_labels(env: Env) -> None:
    sn = env.sn
    await _committed(sn, "base", "", {})
    await sn.update(Info(name="base", labels={"tier": "base"}), ["labels.tier"])
    await sn.prepare("work", "base", labels={"tier": "app", "dotted.key/x": "yes"})
    await sn.view("look", "base", labels={"tier": "app"})
    await sn.prepare("lone")
    assert await _walk(sn) == ["base", "lone", "look", "work"]
    assert await _walk(sn, [""]) == ["base", "lone", "look", "work"]
    try:
        from pycontainerd.core import filters  # noqa: F401
    except ImportError as e:
        raise CaseSkipped("pycontainerd.core.filters is not available") from e
    assert await _walk(sn, ["kind==committed"]) == ["base"]
    assert await _walk(sn, ["kind==active"]) == ["lone", "work"]
    assert await _walk(sn, ["kind==view"]) == ["look"]
    assert await _walk(sn, ["name==work"]) == ["work"]
    assert await _walk(sn, ["parent==base"]) == ["look", "work"]
    assert await _walk(sn, ["labels.tier==app"]) == ["look", "work"]
    assert await _walk(sn, ["labels.tier"]) == ["base", "look", "work"]
    assert await _walk(sn, ['labels."dotted.key/x"==yes']) == ["work"]
    assert await _walk(sn, ["labels.tier==app,kind==view"]) == ["look"]
    assert await _walk(sn, ["name==lone", "kind==committed"]) == ["base", "lone"]
    assert await _walk(sn, ["name~=^l"]) == ["lone", "look"]
    assert await _walk(sn, ["labels.tier!=app"]) == ["base", "lone"]
    assert await _walk(sn, ["name==nothing"]) == []
    async with _raises(errdefs.InvalidArgument):
        await _walk(sn, ["name=="])


@_case
async def concurrent_prepares_all_succeed(env: Env) -> None:
    sn = env.sn
    await _committed(sn, "base", "", {"f": b"1"})
    keys = [f"k{i}" for i in range(8)]
    results = await asyncio.gather(*(sn.prepare(k, "base") for k in keys))
    assert len(results) == len(keys)
    for k in keys:
        await _apply(await sn.mounts(k), {"own": k.encode()})
    for k in keys:
        _assert_tree(await _tree(await sn.mounts(k)), {"f": b"1", "own": k.encode()}, k)
    dup = await asyncio.gather(
        *(sn.prepare("same", "base") for _ in range(4)), return_exceptions=True
    )
    ok = [r for r in dup if not isinstance(r, BaseException)]
    errs = [r for r in dup if isinstance(r, BaseException)]
    assert len(ok) == 1 and all(isinstance(e, errdefs.AlreadyExists) for e in errs), dup


@_case
async def cleanup_removes_crash_leftovers_and_keeps_snapshots(env: Env) -> None:
    sn = env.sn
    if not isinstance(sn, Cleaner):
        raise CaseSkipped("snapshotter has no cleanup()")
    where = env.leftovers_dir(env.root)
    if where is None or not os.path.isdir(where):
        raise CaseSkipped("snapshotter's data directory is not on this host")
    await _committed(sn, "base", "", {"f": b"1"})
    await sn.prepare("a", "base")
    await _apply(await sn.mounts("a"), {"g": b"2"})
    before = sorted(os.listdir(where))
    # what a crash leaves: a half-built directory and a fully built one without a record
    strays = [os.path.join(where, "new-123456"), os.path.join(where, "987654")]
    for s in strays:
        os.makedirs(os.path.join(s, "fs", "deep"))
        with open(os.path.join(s, "fs", "deep", "file"), "wb") as f:
            f.write(b"junk")
    await sn.cleanup()
    for s in strays:
        assert not os.path.lexists(s), f"cleanup left {s}"
    assert sorted(os.listdir(where)) == before
    _assert_tree(await _tree(await sn.mounts("a")), {"f": b"1", "g": b"2"}, "a after cleanup")
    # and a fresh start removes them too
    os.makedirs(strays[1])
    sn = await env.reopen()
    assert not os.path.lexists(strays[1]), "re-open left a crash leftover"
    assert await _walk(sn) == ["a", "base"]


@_case
async def removed_snapshot_data_is_reclaimed(env: Env) -> None:
    sn = env.sn
    where = env.leftovers_dir(env.root)
    if where is None or not os.path.isdir(where):
        raise CaseSkipped("snapshotter's data directory is not on this host")
    before = set(os.listdir(where))
    await _committed(sn, "base", "", {"f": b"1" * 4096})
    await sn.prepare("a", "base")
    await sn.remove("a")
    await sn.remove("base")
    if isinstance(sn, Cleaner):
        await sn.cleanup()
    assert set(os.listdir(where)) == before, sorted(set(os.listdir(where)) - before)


@_case
async def reopening_the_same_root_keeps_everything(env: Env) -> None:
    sn = env.sn
    await _committed(sn, "l1", "", {"a": b"1"})
    await _committed(sn, "l2", "l1", {"b": b"2"})
    await sn.update(Info(name="l2", labels={"x": "y"}), ["labels.x"])
    await sn.prepare("act", "l2", labels={"who": "act"})
    await _apply(await sn.mounts("act"), {"c": b"3"})
    await sn.view("look", "l2")
    stats = {k: await sn.stat(k) for k in ("l1", "l2", "act", "look")}
    usage = await sn.usage("l2")

    sn = await env.reopen()
    assert await _walk(sn) == ["act", "l1", "l2", "look"]
    for k, info in stats.items():
        assert await sn.stat(k) == info, (k, await sn.stat(k), info)
    assert await sn.usage("l2") == usage
    _assert_tree(await _tree(await sn.mounts("act")), {"a": b"1", "b": b"2", "c": b"3"}, "act")
    _assert_tree(await _tree(await sn.mounts("look")), {"a": b"1", "b": b"2"}, "look")
    # and work goes on: commit, build on it, remove
    await sn.commit("l3", "act")
    mounts = await sn.prepare("next", "l3")
    _assert_tree(await _tree(mounts), {"a": b"1", "b": b"2", "c": b"3"}, "next")
    async with _raises(errdefs.FailedPrecondition):
        await sn.remove("l3")
    await sn.remove("next")
    await sn.remove("l3")


@_case
async def close_is_idempotent(env: Env) -> None:
    await env.sn.close()
    await env.sn.close()
    env.sn = await env.factory(env.root)
    assert await _walk(env.sn) == []
