"""Init order: a topological sort of the registrations by their required types (networkx).

An edge runs from every registration of a required type to the requirer (``"*"``: from every
other registration). Ties keep registration order, so the order is deterministic. Disabled
registrations are removed first and never pulled in. networkx is only imported when the order
is not already cached for this exact set of registrations (it costs ~250 ms to import).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence

from pycontainerd.core.plugin.registration import ALL, Registration

log = logging.getLogger(__name__)


class CycleError(ValueError):
    """The registrations' requirements form a cycle; the message prints it."""


def _key(regs: Sequence[Registration]) -> str:
    h = hashlib.sha256()
    for r in regs:
        h.update(json.dumps([r.uri, list(r.requires)]).encode())
        h.update(b"\n")
    return h.hexdigest()


def order(
    registrations: Iterable[Registration],
    disabled: Iterable[str] = (),
    *,
    cache_dir: str | None = None,
) -> list[Registration]:
    """The registrations not in ``disabled`` (URIs), in init order."""
    skip = set(disabled)
    regs = [r for r in registrations if r.uri not in skip]
    if not regs:
        return []
    key = _key(regs)
    by_uri = {r.uri: r for r in regs}
    cache_file = os.path.join(cache_dir, "plugin-order.json") if cache_dir else None
    if cache_file:
        cached = _read_cache(cache_file, key)
        if cached is not None and set(cached) == set(by_uri):
            return [by_uri[u] for u in cached]
    result = _sort(regs)
    if cache_file:
        _write_cache(cache_file, key, [r.uri for r in result])
    return result


def _sort(regs: Sequence[Registration]) -> list[Registration]:
    import networkx as nx

    index = {r.uri: i for i, r in enumerate(regs)}
    by_type: dict[str, list[Registration]] = {}
    for r in regs:
        by_type.setdefault(r.type, []).append(r)
    g = nx.DiGraph()
    g.add_nodes_from(index)
    for r in regs:
        for req in r.requires:
            providers = [x for x in regs if x is not r] if req == ALL else by_type.get(req, [])
            for p in providers:
                g.add_edge(p.uri, r.uri)
    try:
        uris = list(nx.lexicographical_topological_sort(g, key=index.__getitem__))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(g)
        path = " -> ".join([cycle[0][0], *(v for _, v in cycle)])
        raise CycleError(f"plugin dependency cycle: {path}") from None
    by_uri = {r.uri: r for r in regs}
    return [by_uri[u] for u in uris]


def _read_cache(path: str, key: str) -> list[str] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    order_ = data.get("order")
    return order_ if isinstance(order_, list) else None


def _write_cache(path: str, key: str, uris: list[str]) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"key": key, "order": uris}, f)
        os.replace(tmp, path)
    except OSError as e:  # a cache, never a reason to fail
        log.debug("cannot write plugin order cache %s: %s", path, e)
