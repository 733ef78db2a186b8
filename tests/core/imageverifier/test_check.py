"""How a pull asks its verifiers (containerd's pull.go): every verifier by plugin ID, the
first refusal or error blocks the pull with containerd's message. The verifiers here are
stand-ins: the logic under test is the asking, not a verifier."""

from __future__ import annotations

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.imageverifier import Judgement, check

DESC = Descriptor(media_type="m", digest="sha256:" + "1" * 64, size=3)
NAME = "example.com/img:1"


class Fixed:
    def __init__(self, answer: Judgement | Exception, asked: list[str], name: str) -> None:
        self.answer, self.asked, self.name = answer, asked, name

    async def verify_image(self, name: str, desc: Descriptor) -> Judgement:
        assert (name, desc) == (NAME, DESC)
        self.asked.append(self.name)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_no_verifiers_allow():
    await check({}, NAME, DESC)


async def test_all_allow_asks_each_in_id_order():
    asked: list[str] = []
    vs = {n: Fixed(Judgement(ok=True, reason="fine"), asked, n) for n in ("b", "a", "c")}
    await check(vs, NAME, DESC)
    assert asked == ["a", "b", "c"]


async def test_a_refusal_blocks_with_the_verifier_and_reason_and_stops_asking():
    asked: list[str] = []
    vs = {
        "a": Fixed(Judgement(ok=False, reason="not signed"), asked, "a"),
        "b": Fixed(Judgement(ok=True), asked, "b"),
    }
    with pytest.raises(errdefs.Unknown) as ei:
        await check(vs, NAME, DESC)
    assert str(ei.value) == (
        f"image verifier a blocked pull of {NAME} with digest {DESC.digest} for reason: not signed"
    )
    assert type(ei.value) is errdefs.Unknown
    assert asked == ["a"]


@pytest.mark.parametrize(
    ("exc", "category"),
    [
        (RuntimeError("boom"), errdefs.Unknown),
        (errdefs.Unavailable("boom"), errdefs.Unavailable),
    ],
)
async def test_an_error_blocks_and_keeps_its_category(exc, category):
    with pytest.raises(category) as ei:
        await check({"x": Fixed(exc, [], "x")}, NAME, DESC)
    assert str(ei.value) == (
        f"blocking pull of {NAME} with digest {DESC.digest}: image verifier x returned error: boom"
    )
