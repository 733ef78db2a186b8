from __future__ import annotations

import pytest

from pycontainerd.core import errdefs, filters
from pycontainerd.core.filters import Adaptor, FilterSyntaxError, adapt_labels, parse, parse_all

# A corpus shaped like containerd's own filter test, plus a few of ours.
CORPUS: list[dict] = [
    {"name": "foo", "labels": {"foo": "true"}},  # 0
    {"name": "bar"},  # 1
    {"name": "foo", "labels": {"foo": "present", "more complex label": "present"}},  # 2
    {"name": "bar", "labels": {"bar": "true"}},  # 3
    {"name": "fooer", "labels": {'more complex label with \\ and "': "present"}},  # 4
    {"name": "fooer", "labels": {'more complex label with \\ and ".post': "present"}},  # 5
    {"name": "baz", "other": "too complex, yo"},  # 6
    {"name": "bazo", "other": "abc"},  # 7
    {"name": "compound", "labels": {"foo": "omg_asdf.asdf-qwer"}},  # 8
    {"name": "k8s", "labels": {"io.kubernetes.pod.name": "web-0", "empty": ""}},  # 9
    {"name": "eq", "other": "a=b", "labels": {"ns/key": "v"}},  # 10
]
ALL = list(range(len(CORPUS)))


def adapt(obj: dict) -> Adaptor:
    return Adaptor.from_mapping(
        {k: v for k, v in obj.items() if k != "labels"}, labels=obj.get("labels")
    )


def matching(flt: filters.Filter) -> list[int]:
    return [i for i, obj in enumerate(CORPUS) if flt.match(adapt(obj))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ALL),
        ("   ", ALL),
        ("name", ALL),
        ("labels.foo", [0, 2, 8]),
        ("labels.foo,name", [0, 2, 8]),
        ("labels.foo==true", [0]),
        ("labels.foo==omg_asdf.asdf-qwer", [8]),
        ("name==bar", [1, 3]),
        ("name!=bar", [0, 2, 4, 5, 6, 7, 8, 9, 10]),
        ("name==bar,labels.bar", [3]),
        ('other=="too complex, yo"', [6]),
        ("other~=[abc]+,name!=foo", [6, 7, 10]),
        ("other~=/[abc]+/,name!=foo", [6, 7, 10]),
        ("other~=/[abc]{1,2}/,name!=foo", [6, 7, 10]),
        ("other~=|[abc]{1,2}|,name!=foo", [6, 7, 10]),
        ('other~=/[abc]{0,1}"\\//,name!=foo', []),
        ("name==bar,labels.bar==true", [3]),
        ("name==bar,labels.bar==wrong", []),
        ('name==foo,labels."more complex label"', [2]),
        ('labels."more complex label with \\\\ and \\""==present', [4]),
        ('labels."more complex label with \\\\ and \\"".post==present', [5]),
        # quoted key with dots, and the same key unquoted (joined with ".")
        ('labels."io.kubernetes.pod.name"==web-0', [9]),
        ("labels.io.kubernetes.pod.name==web-0", [9]),
        # a label present with an empty value is present; == "" matches it
        ("labels.empty", [9]),
        ('labels.empty==""', [9]),
        # unquoted value may contain "=" after its first character
        ("other==a=b", [10]),
        ('other=="a=b"', [10]),
        # "/" inside a quoted field, and inside an unquoted value
        ('labels."ns/key"==v', [10]),
        ("other~=^too", [6]),
        # != holds for absent fields; ~= searches the empty value of absent fields
        ("other!=abc", [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]),
        ("other~=^$", [0, 1, 2, 3, 4, 5, 8, 9]),
        # ~= is a search, not a full match
        ("name~=oo", [0, 2, 4, 5]),
        # escapes in quoted values
        ('name=="\\x66oo"', [0, 2]),
        ('name=="\\u0066oo"', [0, 2]),
        ('name=="\\146oo"', [0, 2]),
        # whitespace between tokens is insignificant
        ("  name  ==  bar , labels . bar  ", [3]),
        ("name==bar ,labels.bar", [3]),
        # field names may start with a digit or underscore, as the scanner allows
        ("labels.foo , _x", []),
    ],
)
def test_filter_matches_expected_objects(text: str, expected: list[int]) -> None:
    assert matching(parse(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "labels.|foo|==omg_asdf.asdf-qwer",
            "filters: parse error: [labels. >|||< foo|==omg_asdf.asdf-qwer]: "
            "invalid quote encountered",
        ),
        (
            'labels.?"more complex label with \\\\ and \\"".post==present',
            'filters: parse error: [labels. >|?|< "more complex label with \\\\ and \\"".post'
            "==present]: expected field or quoted",
        ),
        ("name==foo,", "filters: parse error: [name==foo,]: expected field or quoted"),
        ("labels.", "filters: parse error: [labels.]: expected field or quoted"),
        (
            "image~=,id?=?fbaq",
            "filters: parse error: [image~= >|,|< id?=?fbaq]: expected value or quoted",
        ),
        (
            "labels.ns/key==value",
            "filters: parse error: [labels.ns >|/|< key==value]: quoted literal not terminated",
        ),
        (
            "labels.key==/value",
            "filters: parse error: [labels.key== >|/|< value]: quoted literal not terminated",
        ),
    ],
)
def test_parse_error_message_marks_position_like_containerd(text: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("name==foo bar", 10, "unexpected input: b"),
        ("name===foo", 4, "unsupported operator '==='"),
        ("name=foo", 4, "unsupported operator '='"),
        ("name foo", 5, "expected an operator"),
        ("name==", 6, "expected value or quoted"),
        (",name", 0, "expected field or quoted"),
        ("name,,x", 5, "expected field or quoted"),
        ("name==/x/", 6, "invalid quote encountered"),
        ("name==|x|", 6, "invalid quote encountered"),
        ('name=="unterminated', 6, "quoted literal not terminated"),
        ('name=="a\nb"', 6, "quoted literal not terminated"),
        ('name=="a\\qb"', 8, "illegal escape sequence"),
        ('name=="a\\x4"', 8, "illegal numeric escape sequence"),
        ('name=="\\777"', 7, "illegal numeric escape sequence"),
        ('name=="\\uD800"', 7, "illegal numeric escape sequence"),
        ("name~=/\\d+/", 7, "illegal escape sequence"),
        ('name=="\\/"', 7, "illegal escape sequence"),
        ("name==a\0b", 7, "unexpected input"),
        ("na\0me", 2, "unexpected null"),
        ("name~=[a-", 6, "invalid regular expression '[a-'"),
        ("name~=/(x/", 6, "invalid regular expression '(x'"),
    ],
)
def test_parse_error_reports_position_and_expectation(
    text: str, position: int, reason: str
) -> None:
    with pytest.raises(errdefs.InvalidArgument) as info:
        parse(text)
    err = info.value
    assert isinstance(err, FilterSyntaxError)
    assert err.position == position
    assert err.reason.startswith(reason)
    assert err.input == text
    assert reason in str(err)


def test_regex_value_may_use_escaped_delimiter() -> None:
    flt = parse("name~=/^a\\/b$/")
    assert flt.match(Adaptor.from_mapping({"name": "a/b"}))
    # inside |...| an escaped | is a plain | in the regex, i.e. alternation
    flt = parse("name~=|^x\\|y$|")
    assert isinstance(flt, filters.Selector) and flt.value == "^x|y$"
    assert flt.match(Adaptor.from_mapping({"name": "xa"}))
    assert not flt.match(Adaptor.from_mapping({"name": "a"}))


def test_unquoted_regex_keeps_backslashes() -> None:
    flt = parse("name~=^a\\d+$")
    assert flt.match(Adaptor.from_mapping({"name": "a12"}))
    assert not flt.match(Adaptor.from_mapping({"name": "ab"}))


def test_parse_all_ors_filters() -> None:
    flt = parse_all(["name==foo,labels.foo==true", "name==bazo"])
    assert matching(flt) == [0, 7]


@pytest.mark.parametrize("given", [[], None, [""], ["name==bar", ""]])
def test_parse_all_empty_list_or_empty_filter_matches_everything(given: list[str] | None) -> None:
    assert matching(parse_all(given)) == ALL


def test_parse_all_reports_a_bad_filter_even_after_an_empty_one() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="expected field or quoted"):
        parse_all(["", "name==x,"])


def test_match_accepts_a_plain_callable() -> None:
    seen: list[list[str]] = []

    def field(path: list[str]) -> tuple[str, bool]:
        seen.append(path)
        return ("v", True) if path == ["a", "b c"] else ("", False)

    assert parse('a."b c"==v').match(field)
    assert seen == [["a", "b c"]]
    assert not parse("a.b==v").match(field)


def test_match_rejects_something_that_is_no_adaptor() -> None:
    with pytest.raises(TypeError):
        parse("name").match(42)  # type: ignore[arg-type]


def test_adapt_labels_joins_the_remaining_path() -> None:
    labels = {"a.b": "1", "c": ""}
    assert adapt_labels(["a", "b"], labels) == ("1", True)
    assert adapt_labels(["c"], labels) == ("", True)
    assert adapt_labels(["x"], labels) == ("", False)
    assert adapt_labels([], labels) == ("", False)
    assert adapt_labels(["a"], None) == ("", False)


def test_adaptor_from_mapping_scalar_empty_is_absent_and_nested_paths_join() -> None:
    ad = Adaptor.from_mapping(
        {"name": "img", "target.digest": "sha256:x", "blank": ""},
        labels={"l": "1"},
        annotations={"org.opencontainers.image.ref.name": "latest"},
    )
    assert ad.field(["name"]) == ("img", True)
    assert ad.field(["target", "digest"]) == ("sha256:x", True)
    assert ad.field(["blank"]) == ("", False)
    assert ad.field(["labels", "l"]) == ("1", True)
    assert ad.field(["annotations", "org", "opencontainers", "image", "ref", "name"]) == (
        "latest",
        True,
    )
    assert ad.field([]) == ("", False)
    assert parse('annotations."org.opencontainers.image.ref.name"==latest').match(ad)


def test_regex_is_compiled_once_at_parse_time() -> None:
    flt = parse("name~=^f")
    assert isinstance(flt, filters.Selector)
    assert flt.regex is not None and flt.regex.pattern == "^f"
