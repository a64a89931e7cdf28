"""YAML entity files that stay fast with 10,000 evidence entries.

Why: an issue lists every trace it concerns (up to 10,000 evidence entries), and libyaml takes
about a second to write such a file and more to read it back, on every update. Most of that is
per-token work on the long lists of small flat records (evidence, traces). So those lists are
written one record per line as a JSON object, which is a YAML flow mapping with the same
meaning:

    evidence:
    - {"trace_id": "tr-1", "rationale": "timed out", "supports": true}

and, when reading, each unbroken run of such lines is parsed with ``json`` in one go while
libyaml parses the rest. The files stay ordinary YAML: any YAML tool reads them, a person may
edit them, and ``load`` returns exactly what a YAML parser returns. Where the two readings
could differ (floats, characters YAML treats as line breaks or refuses, a record line inside a
multi-line string), the slow path is taken.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from typing import Any

import yaml

# libyaml's C loader and dumper are ~10x faster than the pure-Python ones; both are safe.
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
MIN_RECORDS = 8              # shorter lists are written the usual way
# Characters a JSON line may carry raw that YAML reads differently (line breaks it folds,
# characters it refuses): a record holding one is written the usual way.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
_RECORD_LINE = re.compile(r"^( *)- (\{.*\})[ ]*$")


def dump(data: Any) -> str:
    """YAML text for ``data``, long lists of flat records one JSON object per line."""
    if not isinstance(data, dict):
        return _plain(data)
    return "".join(_mapping(data, ""))


def load(text: str) -> Any:
    """Parse YAML text exactly as libyaml's safe loader would, only faster for record lists."""
    if "- {" not in text:
        return yaml.load(text, Loader=Loader)
    blocks: list[list[dict[str, Any]]] = []
    tag = f"__insights_records_{secrets.token_hex(8)}_"
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        run, pad, j = _record_run(lines, i)
        if len(run) >= 2:
            out.append(f"{pad}- {tag}{len(blocks)}")
            blocks.append(run)
            i = j
        else:
            out.append(lines[i])
            i += 1
    if not blocks or any("!" in line for line in out):
        # no record lines, or a tag (e.g. !!omap, !!set) that could change what a list means
        return yaml.load(text, Loader=Loader)
    data = yaml.load("\n".join(out), Loader=Loader)
    spliced, found = _splice(data, tag, blocks)
    if found != len(blocks):      # a placeholder landed inside a string: read it the slow way
        return yaml.load(text, Loader=Loader)
    return spliced


# ---------------------------------------------------------------------- writing


def _plain(data: Any) -> str:
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


def _mapping(data: dict[str, Any], pad: str) -> list[str]:
    parts: list[str] = []
    for key, value in data.items():
        head = _key(key)
        if head and isinstance(value, dict) and value:
            parts.append(f"{pad}{head}\n")
            parts.extend(_mapping(value, pad + "  "))
        elif head and (lines := _record_lines(value)) is not None:
            parts.append(f"{pad}{head}\n")
            parts.extend(f"{pad}- {line}\n" for line in lines)
        else:
            parts.append(_indent(_plain({key: value}), pad))
    return parts


@functools.lru_cache(maxsize=4096, typed=True)  # typed: 1, 1.0 and True spell differently
def _key(key: Any) -> str | None:
    """``key:`` as YAML spells it (quoted when it must be); None for a complex key. Cached:
    entity files repeat the same few dozen keys, and each spelling is a libyaml dump."""
    text = _plain({key: 0})
    if not text.endswith(" 0\n") or "\n" in text[:-1] or text.startswith("?"):
        return None
    return text[: -len(" 0\n")]


def _indent(text: str, pad: str) -> str:
    if not pad:
        return text
    return "".join(line if line == "\n" else pad + line for line in text.splitlines(True))


def _record_lines(value: Any) -> list[str] | None:
    """One JSON line per record, for a list long enough to matter of dicts holding only
    strings, ints, bools and nulls that YAML reads alike; None otherwise."""
    if not isinstance(value, list) or len(value) < MIN_RECORDS:
        return None
    if not all(type(r) is dict and _flat(r) for r in value):
        return None
    lines = [json.dumps(r, ensure_ascii=False) for r in value]
    return None if any(_YAML_UNSAFE.search(line) for line in lines) else lines


_SCALARS = frozenset({str, int, bool, type(None)})


def _flat(record: dict) -> bool:
    """Keys are strings, values strings, ints, bools or nulls (no floats: YAML reads 1e5 as text)."""
    return all(type(k) is str for k in record) and all(type(v) in _SCALARS
                                                       for v in record.values())


# ---------------------------------------------------------------------- reading


def _record_run(lines: list[str], i: int) -> tuple[list[dict[str, Any]], str, int]:
    """The records on consecutive record lines from ``i`` at one indent, and where they end."""
    run: list[dict[str, Any]] = []
    pad = None
    j = i
    while j < len(lines):
        m = _RECORD_LINE.match(lines[j])
        if not m or (pad is not None and m.group(1) != pad):
            break
        record = _json_record(m.group(2))
        if record is None:
            break
        pad = m.group(1)
        run.append(record)
        j += 1
    return run, pad or "", j


def _json_record(text: str) -> dict[str, Any] | None:
    """The record on a line when JSON and YAML read it alike, else None."""
    if "\t" in text or _YAML_UNSAFE.search(text) or "\\ud" in text.lower():
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and _flat(record) else None


def _splice(value: Any, tag: str, blocks: list[list[dict[str, Any]]]) -> tuple[Any, int]:
    """Put each block's records where its placeholder item is; count the placeholders met.

    A placeholder met anywhere but as a whole list item counts as not found."""
    if isinstance(value, dict):
        found = 0
        for k, v in value.items():
            value[k], n = _splice(v, tag, blocks)
            found += n
        return value, found
    if isinstance(value, list):
        out: list[Any] = []
        found = 0
        for item in value:
            if isinstance(item, str) and item.startswith(tag) and item[len(tag):].isdigit():
                out.extend(blocks[int(item[len(tag):])])
                found += 1
            else:
                item, n = _splice(item, tag, blocks)
                out.append(item)
                found += n
        return out, found
    if isinstance(value, str) and tag in value:
        return value, -10**9
    return value, 0
