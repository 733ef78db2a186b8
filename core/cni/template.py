"""``conf_template``: the CNI config the CRI writes once kubelet hands it the pod CIDRs
(UpdateRuntimeConfig), as containerd does when no other component dropped a config.

The template is a Go ``text/template`` over ``.PodCIDR`` (the first range), ``.PodCIDRRanges``
and ``.Routes`` (``0.0.0.0/0`` and/or ``::/0``, one per address family present). The subset of
the template language implemented here is what such templates use: ``{{.Field}}``,
``{{$var}}``, ``{{.}}``, ``{{range $i, $v := .Field}}``/``{{range .Field}}``,
``{{if X}}``/``{{else}}``/``{{end}}`` and the ``{{-``/``-}}`` whitespace trimming. Anything else
is an InvalidArgument naming the action.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from pycontainerd.core import errdefs

#: the file containerd writes into the conf dir
CONFIG_FILE_NAME = "10-containerd-net.conflist"

_ACTION = re.compile(r"{{(-\s)?\s*(.*?)\s*(\s-)?}}", re.S)
_RANGE = re.compile(r"range\s+(?:(\$\w+)\s*,\s*(\$\w+)\s*:=\s*|(\$\w+)\s*:=\s*)?(\S+)$")


def routes_for(cidrs: Sequence[str]) -> list[str]:
    """The default routes for the families of ``cidrs``, in order of first appearance."""
    out: list[str] = []
    for c in cidrs:
        try:
            net = ipaddress.ip_network(c, strict=False)
        except ValueError:
            raise errdefs.InvalidArgument(f'invalid pod cidr "{c}"') from None
        route = "0.0.0.0/0" if net.version == 4 else "::/0"
        if route not in out:
            out.append(route)
    return out


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(text):
        literal = text[pos : m.start()]
        if m.group(1):
            literal = literal.rstrip()
        out.append(("text", literal))
        out.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip())
    out.append(("text", text[pos:]))
    return out


def _parse(tokens: list[tuple[str, str]], i: int, until: tuple[str, ...]) -> tuple[list[Any], int]:
    nodes: list[Any] = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(("text", value))
            i += 1
            continue
        word = value.split(None, 1)[0] if value else ""
        if word in until:
            return nodes, i
        if word == "range":
            m = _RANGE.match(value)
            if not m:
                raise errdefs.InvalidArgument(f'unsupported template action "{{{{{value}}}}}"')
            body, i = _parse(tokens, i + 1, ("end", "else"))
            if tokens[i][1] != "end":
                raise errdefs.InvalidArgument("template: range with else is not supported")
            index_var, value_var = (m.group(1), m.group(2)) if m.group(1) else (None, m.group(3))
            nodes.append(("range", index_var, value_var, m.group(4), body))
            i += 1
        elif word == "if":
            cond = value[2:].strip()
            then, i = _parse(tokens, i + 1, ("end", "else"))
            other: list[Any] = []
            if tokens[i][1] == "else":
                other, i = _parse(tokens, i + 1, ("end",))
            nodes.append(("if", cond, then, other))
            i += 1
        elif word in ("end", "else"):
            raise errdefs.InvalidArgument(f'template: unexpected "{{{{{value}}}}}"')
        else:
            nodes.append(("expr", value))
            i += 1
    if until:
        raise errdefs.InvalidArgument(f"template: missing {{{{{until[0]}}}}}")
    return nodes, i


def _eval(expr: str, data: Mapping[str, Any], scope: Mapping[str, Any]) -> Any:
    if expr == ".":
        return scope.get(".", data)
    if expr.startswith("$") and expr in scope:
        return scope[expr]
    if re.fullmatch(r"\.\w+", expr) and expr[1:] in data:
        return data[expr[1:]]
    raise errdefs.InvalidArgument(f'unsupported template action "{{{{{expr}}}}}"')


def _render(
    nodes: list[Any], data: Mapping[str, Any], scope: dict[str, Any], out: list[str]
) -> None:
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "expr":
            out.append(str(_eval(node[1], data, scope)))
        elif kind == "if":
            _render(node[2] if _eval(node[1], data, scope) else node[3], data, scope, out)
        else:
            _, index_var, value_var, source, body = node
            for i, item in enumerate(_eval(source, data, scope)):
                inner = dict(scope)
                inner["."] = item
                if index_var:
                    inner[index_var] = i
                if value_var:
                    inner[value_var] = item
                _render(body, data, inner, out)


def render_conf_template(template: str, pod_cidrs: Sequence[str]) -> str:
    """The config text for ``pod_cidrs`` (at least one)."""
    if not pod_cidrs:
        raise errdefs.InvalidArgument("no pod cidr to render the cni config template with")
    data = {
        "PodCIDR": pod_cidrs[0],
        "PodCIDRRanges": list(pod_cidrs),
        "Routes": routes_for(pod_cidrs),
    }
    nodes, _ = _parse(_tokens(template), 0, ())
    out: list[str] = []
    _render(nodes, data, {}, out)
    return "".join(out)


def write_conf_from_template(template_path: str, conf_dir: str, pod_cidrs: Sequence[str]) -> str:
    """Render ``template_path`` and write it atomically as
    ``<conf_dir>/10-containerd-net.conflist``; returns the path written."""
    try:
        with open(template_path, encoding="utf-8") as f:
            template = f.read()
    except OSError as e:
        raise errdefs.FailedPrecondition(
            f'failed to read cni config template "{template_path}": {e.strerror}'
        ) from e
    text = render_conf_template(template, pod_cidrs)
    os.makedirs(conf_dir, mode=0o755, exist_ok=True)
    path = os.path.join(conf_dir, CONFIG_FILE_NAME)
    fd, tmp = tempfile.mkstemp(dir=conf_dir, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
