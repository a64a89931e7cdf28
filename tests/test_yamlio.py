"""insights.yamlio: record lists written as JSON lines read back exactly as YAML reads them."""

from __future__ import annotations

import random
import string

import pytest
import yaml

from insights import yamlio

TRICKY = ["", " ", "yes", "no", "null", "~", "1.5", "0x1f", "1e5", "- {\"a\": 1}", "a: b",
          "# not a comment", "'quoted'", '"dq"', "tab\there", "line\nbreak", "trail ",
          "ünïcødé ☃", "emoji 😀", "nel\x85", "ls\u2028", "del\x7f", "bell\x07", "\\u0041",
          "{braces}", "[list]", "&anchor", "*alias", "!tag", "%percent", "@at", "`tick`",
          "x" * 300]


def slow(text: str):
    return yaml.load(text, Loader=yamlio.Loader)


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 5)
    if kind == 0:
        return rng.choice(TRICKY)
    if kind == 1:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(12)))
    if kind == 2:
        return rng.randrange(-10**12, 10**12)
    if kind == 3:
        return rng.choice([True, False, None, 0.5, float(rng.randrange(100))])
    if kind == 4:
        return rng.choice(TRICKY) + str(rng.random())
    if kind in (5, 6):   # a list of records, flat or not
        n = rng.choice([0, 1, 2, 8, 9, 40])
        return [{k: random_value(rng, 3) for k in rng.sample(["trace_id", "rationale", "supports",
                                                             "weird key: x", "n"], 3)}
                for _ in range(n)]
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(TRICKY + ["k1", "k2", "evidence"]): random_value(rng, depth + 1)
            for _ in range(rng.randrange(5))}


@pytest.mark.parametrize("seed", range(300))
def test_dump_then_load_gives_back_the_data_and_agrees_with_libyaml(seed):
    rng = random.Random(seed)
    data = {f"k{i}": random_value(rng) for i in range(rng.randrange(1, 6))}
    text = yamlio.dump(data)
    assert slow(text) == data
    assert yamlio.load(text) == data


def test_long_record_lists_are_written_one_json_line_each():
    evidence = [{"trace_id": f"tr-{i}", "rationale": "timed out", "supports": True}
                for i in range(20)]
    text = yamlio.dump({"title": "t", "state": {"evidence": evidence}, "metadata": {"n": 1}})
    lines = text.splitlines()
    assert '  - {"trace_id": "tr-0", "rationale": "timed out", "supports": true}' in lines
    assert sum(1 for line in lines if line.startswith("  - {")) == 20
    assert yamlio.load(text)["state"]["evidence"] == evidence


def test_records_yaml_would_read_differently_are_written_the_usual_way():
    evidence = [{"trace_id": f"tr-{i}", "score": 0.5 if i == 3 else 1} for i in range(10)]
    text = yamlio.dump({"evidence": evidence})
    assert "- {" not in text
    assert yamlio.load(text) == {"evidence": evidence}
    odd = [{"trace_id": f"tr-{i}", "note": "a\u2028b"} for i in range(10)]
    assert yamlio.load(yamlio.dump({"evidence": odd})) == {"evidence": odd}


@pytest.mark.parametrize("text", [
    # record lines inside a literal block: they are text, not list items
    'description: |\n  - {"a": 1}\n  - {"b": 2}\nevidence: []\n',
    # a mix of record lines and other items in one list
    'evidence:\n- plain\n- {"a": 1}\n- {"a": 2}\n- {"a": 3.5}\n- {"a": 4}\n- {"a": 5}\n',
    # hand-edited lines YAML reads but JSON does not, and unusual spacing
    'evidence:\n- {a: 1}\n- {"a": 2}\n- {"a": 3}   \n-   {"a": 4}\n',
    # indented lists at two depths, and a flow mapping with YAML-only escapes
    'x:\n  y:\n    - {"a": "\\u00e9"}\n    - {"a": "\\x41"}\n  z:\n  - {"b": null}\n  - {"b": true}\n',
    # a JSON object whose strings YAML would read differently
    'e:\n- {"a": "1\\u2028"}\n- {"a": "2"}\n- {"a": "3"}\n',
    # tagged collections: what the list means depends on the tag
    'a: !!omap\n- {"x": 1}\n- {"y": 2}\n',
    'a: !!pairs\n- {"x": 1}\n- {"y": 2}\n',
])
def test_hand_written_files_load_as_libyaml_loads_them(text):
    assert yamlio.load(text) == slow(text)


def test_malformed_yaml_still_raises():
    with pytest.raises(yaml.YAMLError):
        yamlio.load('evidence:\n- {"a": 1}\n- {"a": 2}\n  bad: [\n')
