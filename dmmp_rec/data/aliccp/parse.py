"""Parsing of raw Ali-CCP lines (ids are folded by `dmmp_rec.data.id_policy`).

Raw format (public dataset description):
  sample_skeleton: ``sample_id,click,purchase,md5,feature_num,feature_list``
  common_features: ``md5,feature_num,feature_list``
``feature_list`` holds ``feature_num`` entries separated by \\x01, each ``field\\x02id\\x03value``.
Lines are handled as bytes: no decoding, and \\x01..\\x03 can never be mistaken for line breaks.
The checks here are structural; ids and values are converted in bulk (`aliccp.entries`).
"""

from __future__ import annotations

from pathlib import Path

from dmmp_rec.errors import DmmpError

ENTRY_SEP = b"\x01"
ID_SEP = b"\x02"
VALUE_SEP = b"\x03"


class MalformedRowError(DmmpError, ValueError):
    """A raw line that cannot be parsed, located by file and 1-based line number."""

    def __init__(self, file: str | Path, line: int, reason: str) -> None:
        self.file = str(file)
        self.line = line
        self.reason = reason
        super().__init__(f"{file}:{line}: {reason}")


class RowProblem(Exception):
    """A parse failure without location; callers turn it into a MalformedRowError."""


def split_feature_list(declared: bytes, feature_list: bytes) -> tuple[list[bytes], ...]:
    """(fields, ids, values) of one feature_list, checked against the declared feature_num."""
    try:
        n = int(declared)
    except ValueError:
        raise RowProblem(f"feature_num {declared[:40]!r} is not an integer") from None
    feature_list = feature_list.rstrip(b"\r\n")
    if n == 0 and not feature_list:
        return [], [], []
    found = feature_list.count(ENTRY_SEP) + 1
    if found != n:
        raise RowProblem(f"feature_num says {n} entries, feature_list has {found}")
    if feature_list.count(ID_SEP) != n or feature_list.count(VALUE_SEP) != n:
        raise RowProblem(r"every feature_list entry must look like field\x02id\x03value")
    flat = feature_list.replace(ID_SEP, ENTRY_SEP).replace(VALUE_SEP, ENTRY_SEP).split(ENTRY_SEP)
    fields, ids, values = flat[0::3], flat[1::3], flat[2::3]
    if not all(fields):
        raise RowProblem("empty field id in feature_list")
    return fields, ids, values


def _label(raw: bytes, name: str) -> int:
    if raw == b"0":
        return 0
    if raw == b"1":
        return 1
    raise RowProblem(f"{name} must be 0 or 1, got {raw[:40]!r}")


def parse_skeleton_line(line: bytes) -> tuple[int, int, bytes, tuple[list[bytes], ...]]:
    """(click, purchase, md5, (fields, ids, values)) of one sample_skeleton line."""
    parts = line.split(b",", 5)
    if len(parts) != 6:
        raise RowProblem(
            f"expected 6 comma-separated columns "
            f"(sample_id,click,purchase,md5,feature_num,feature_list), got {len(parts)}"
        )
    _, click, purchase, md5, num, feature_list = parts
    if not md5:
        raise RowProblem("empty md5 (common feature index)")
    return (
        _label(click, "click"),
        _label(purchase, "purchase"),
        md5,
        split_feature_list(num, feature_list),
    )


def parse_common_line(line: bytes) -> tuple[bytes, tuple[list[bytes], ...]]:
    """(md5, (fields, ids, values)) of one common_features line."""
    parts = line.split(b",", 2)
    if len(parts) != 3:
        raise RowProblem(
            f"expected 3 comma-separated columns (md5,feature_num,feature_list), got {len(parts)}"
        )
    md5, num, feature_list = parts
    if not md5:
        raise RowProblem("empty md5")
    return md5, split_feature_list(num, feature_list)
