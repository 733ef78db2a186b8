"""Image verifiers (containerd's ``pkg/imageverifier``): programs or services that approve or
refuse an image before it is pulled.

A verifier answers :meth:`ImageVerifier.verify_image` with a :class:`Judgement`, or raises when
it cannot judge. The transfer service asks every ``io.containerd.image-verifier.v1`` instance
through :func:`check` once a pull has resolved its manifest and before it fetches anything; a
refusal or an error fails the pull.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.content.descriptor import Descriptor

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class Judgement:
    """A verifier's answer: ``ok`` allows the pull; ``reason`` says why, either way."""

    ok: bool
    reason: str = ""


class ImageVerifier(Protocol):
    async def verify_image(self, name: str, desc: Descriptor) -> Judgement:
        """Judge the image ``name`` whose root (index or manifest) is ``desc``. Raises when no
        judgement can be given (the caller then blocks the pull)."""
        ...


async def check(verifiers: Mapping[str, ImageVerifier], name: str, desc: Descriptor) -> None:
    """Ask every verifier (by plugin ID, in sorted order) about ``name`` at ``desc``; raise on
    the first refusal (Unknown, naming the verifier and its reason) or error (its category
    kept, Unknown for non-categorised errors), as containerd's pull does."""
    for vf_name in sorted(verifiers):
        log.debug("verifying image pull: name=%s digest=%s verifier=%s", name, desc.digest, vf_name)
        try:
            jdg = await verifiers[vf_name].verify_image(name, desc)
        except Exception as exc:
            log.error(
                "no judgement received from verifier: name=%s digest=%s verifier=%s error=%s",
                name,
                desc.digest,
                vf_name,
                exc,
            )
            raise errdefs.from_code(
                exc.code if isinstance(exc, errdefs.ContainerdError) else errdefs.Code.UNKNOWN,
                f"blocking pull of {name} with digest {desc.digest}: "
                f"image verifier {vf_name} returned error: {exc}",
            ) from exc
        if not jdg.ok:
            log.warning(
                "image verifier blocked pull: name=%s digest=%s verifier=%s reason=%s",
                name,
                desc.digest,
                vf_name,
                jdg.reason,
            )
            raise errdefs.Unknown(
                f"image verifier {vf_name} blocked pull of {name} with digest {desc.digest} "
                f"for reason: {jdg.reason}"
            )
        log.debug(
            "image verifier allowed pull: name=%s digest=%s verifier=%s reason=%s",
            name,
            desc.digest,
            vf_name,
            jdg.reason,
        )
