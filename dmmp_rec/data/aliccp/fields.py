"""Which raw Ali-CCP field feeds which configured feature.

A feature takes its raw field from its name: ``f<field>_<label>``, e.g. ``f101_user_id`` reads
field ``101`` and ``f109_14_hist_cats`` reads field ``109_14``. The mapping therefore lives in the
YAML the user edits, needs no extra config section, and a renamed feature cannot silently read
the wrong field. Every table reserves row 0 for "missing", so a cardinality must be at least 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dmmp_rec.config import ConfigError, FeaturesConfig, FeatureSpec
from dmmp_rec.config.features import GROUPS

# The 23 fields of the public dataset description (Ali-CCP, Table 2 of its documentation).
ALICCP_FIELDS: dict[str, str] = {
    "101": "user id",
    "121": "user profile category",
    "122": "user profile group",
    "124": "user gender",
    "125": "user age",
    "126": "user consumption level I",
    "127": "user consumption level II",
    "128": "user employed",
    "129": "user geography",
    "109_14": "user behaviour: categories (multi)",
    "110_14": "user behaviour: shops (multi)",
    "127_14": "user behaviour: brands (multi)",
    "150_14": "user behaviour: intention nodes (multi)",
    "205": "item id",
    "206": "item category",
    "207": "item shop",
    "210": "item intention nodes (multi)",
    "216": "item brand",
    "508": "cross 109_14 x 206",
    "509": "cross 110_14 x 207",
    "702": "cross 127_14 x 216",
    "853": "cross 150_14 x 210 (multi)",
    "301": "scenario / position",
}

# The combination fields: user history x item. Only the teacher may read them (features.cross):
# a retrieval tower embeds one side, and these are unknown before an item is chosen.
CROSS_FIELDS = ("508", "509", "702", "853")

_NAME = re.compile(r"^f(\d+(?:_\d+)?)_[A-Za-z]\w*$")
MISSING_ID = 0  # table row of a feature absent from a row


@dataclass(frozen=True)
class FieldSlot:
    """One configured feature and the raw field it reads; `index` is its KJT key position."""

    spec: FeatureSpec
    field: str
    index: int

    @property
    def field_bytes(self) -> bytes:
        return self.field.encode()


def field_of(name: str) -> str | None:
    """The raw field id encoded in a feature name, or None when the name has no field."""
    m = _NAME.match(name)
    return m.group(1) if m else None


def resolve_fields(features: FeaturesConfig) -> list[FieldSlot]:
    """Map every configured feature to its raw field; ConfigError names the offending key."""
    slots: list[FieldSlot] = []
    used: dict[str, str] = {}
    index = 0
    for group in GROUPS:
        for i, spec in enumerate(features.group(group)):
            where = f"features.{group}.{i}"
            field = field_of(spec.name)
            if field is None or field not in ALICCP_FIELDS:
                raise ConfigError(
                    f"{where}.name",
                    f"Ali-CCP feature names must be f<field>_<label> with a known field "
                    f"({', '.join(ALICCP_FIELDS)}); got {spec.name!r}",
                )
            if (field in CROSS_FIELDS) != (group == "cross"):
                raise ConfigError(
                    f"{where}.name",
                    f"field {field} ({ALICCP_FIELDS[field]}) belongs in features.cross, which "
                    "only the teacher reads"
                    if field in CROSS_FIELDS
                    else f"features.cross holds the combination fields "
                    f"{', '.join(CROSS_FIELDS)} only; field {field} is {ALICCP_FIELDS[field]}",
                )
            if field in used:
                raise ConfigError(
                    f"{where}.name",
                    f"field {field} is already read by feature {used[field]!r}",
                )
            if spec.cardinality < 2:
                raise ConfigError(
                    f"{where}.cardinality",
                    f"must be >= 2 (row {MISSING_ID} is reserved for missing), "
                    f"got {spec.cardinality}",
                )
            used[field] = spec.name
            slots.append(FieldSlot(spec=spec, field=field, index=index))
            index += 1
    return slots
