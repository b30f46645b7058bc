"""What the end-of-run call is shown of a result later steps used (graphs/result_preview.py)."""

from __future__ import annotations

import json

from graphs.result_preview import CUT, STRING_CHARS, preview


def test_short_text_is_whole_and_other_text_keeps_its_start() -> None:
    assert preview("short", 10) == ("short", "whole")
    assert preview("{not json " + "x" * 100, 20) == ("{not json xxxxxxxxxx", "start")
    assert preview("[" * 100_000 + "]" * 100_000, 30)[1] == "start"  # too deep to outline


def test_json_keeps_every_key_even_long_ones_that_share_a_start() -> None:
    record = {"a" * 40 + "X": "one", "a" * 40 + "Y": "two", "pad": "z" * 400, "n": [1, 2, 3, 4]}
    shown, how = preview(json.dumps(record), 300)
    assert how == "outline"
    outline = json.loads(shown)
    assert outline == {
        "a" * 40 + "X": "one",
        "a" * 40 + "Y": "two",
        "pad": "z" * STRING_CHARS + CUT,
        "n": [1, 2, 3, f"{CUT} 1 more"],
    }


def test_json_that_only_lost_its_whitespace_says_so() -> None:
    shown, how = preview(json.dumps({"a": 1, "b": [1, 2]}, indent=40), 100)
    assert (shown, how) == ('{"a":1,"b":[1,2]}', "compact")


def test_an_outline_longer_than_the_limit_falls_back_to_the_start() -> None:
    many = json.dumps({f"key{i}": i for i in range(200)})
    assert preview(many, 300) == (many[:300], "start")


def test_fill_keeps_every_key_and_item_and_gives_the_strings_what_is_left() -> None:
    record = {"items": list(range(20)), "body": "b" * 5000, "tail": "t" * 100, "last": 7}
    shown, how = preview(json.dumps(record), 1000, fill=True)
    assert how == "outline" and len(shown) <= 1000
    outline = json.loads(shown)
    assert outline["items"] == list(range(20)) and outline["last"] == 7
    assert outline["tail"] == "t" * 100  # shorter than the cut: whole
    body = outline["body"]
    assert body == "b" * (len(body) - 1) + CUT
    assert len(shown) > 990  # the longest cut that fits, not the shortest


def test_fill_without_a_cut_is_compact_and_a_structure_too_long_is_its_start() -> None:
    spaced = json.dumps({"a": 1, "b": [1, 2]}, indent=40)
    assert preview(spaced, 100, fill=True) == ('{"a":1,"b":[1,2]}', "compact")
    many = json.dumps({f"key{i}": "v" * 50 for i in range(200)})  # keys alone pass 1,000
    assert preview(many, 1000, fill=True) == (many[:1000], "start")


def test_text_of_exactly_the_limit_is_whole() -> None:
    for text in ("x" * 300, json.dumps({"key": "v" * 280, "list": [1, 2]})):
        assert preview(text, len(text)) == (text, "whole")
        assert preview(text, len(text), fill=True) == (text, "whole")
        assert preview(text, len(text) - 1)[1] != "whole"


def test_a_json_result_too_long_to_parse_shows_its_start() -> None:
    """Past MAX_PARSE_CHARS a result is not parsed (parsing megabytes for a 300-character
    preview costs more than it shows)."""
    from graphs.result_preview import MAX_PARSE_CHARS

    text = json.dumps(["x" * 100] * (MAX_PARSE_CHARS // 100))
    assert len(text) > MAX_PARSE_CHARS
    assert preview(text, 300) == (text[:300], "start")


def test_an_empty_container_at_the_depth_limit_is_kept() -> None:
    """Only a container with something in it is cut to … at the depth limit."""
    shown, how = preview(json.dumps({"a": {"b": {"c": [], "d": {}}}, "pad": "x" * 500}), 300)
    assert how == "outline"
    assert '"c":[]' in shown and '"d":{}' in shown


def test_fill_gives_the_strings_the_most_that_fits() -> None:
    """The search for the longest string cut that fits must not stop short of it."""
    value = {"a": "x" * 3000, "b": "y" * 3000}
    for limit in (200, 301, 999, 1500):
        shown, _ = preview(json.dumps(value), limit, fill=True)
        assert len(shown) <= limit
        # Every string one character longer than shown would not fit.
        kept = len(json.loads(shown)["a"].rstrip(CUT))
        wider = {k: v[: kept + 1] + CUT for k, v in value.items()}
        assert len(json.dumps(wider, ensure_ascii=False, separators=(",", ":"))) > limit, limit


def test_a_json_list_gets_an_outline_too() -> None:
    records = json.dumps([{"k": "x" * 500}] * 10)
    shown, how = preview(records, 300)
    assert how == "outline"
    assert shown.startswith('[{"k":"' + "x" * 40 + '…"}') and shown.endswith('"… 7 more"]')


def test_an_outline_keeps_three_levels_and_cuts_the_fourth() -> None:
    nested = json.dumps({"a": {"b": {"c": {"d": 1}}}, "pad": "y" * 600})
    shown, how = preview(nested, 300)
    assert how == "outline"
    assert shown.startswith('{"a":{"b":{"c":"…"}}') and '"d"' not in shown
