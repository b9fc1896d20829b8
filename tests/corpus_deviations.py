"""Where our decode of the libmbus corpus differs from libmbus's normalized XML, and why.

Key: (frame name, record index without idle fillers, libmbus XML field). Value: a reason code
from REASONS; docs/deviations.md explains each code with the EN 13757-3 clause. The corpus
test fails on a difference that is not listed here and on a listed one that no longer occurs.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    "invalid_date": "date with day/month 0 or a year beyond the field: value None, valid False",
    "non_bcd_digits": "BCD data with A-E nibbles: value None, valid False (no hex arithmetic)",
    "vife_combinable": "a combinable VIFE changes quantity or unit; libmbus ignores it",
    "reserved_vif": "VIF 7Bh without extension bit is reserved; libmbus prints an empty record",
    "fixed_si_units": "fixed data structure counters are scaled to SI units like all values",
}

_FIXED = {(frame, i, field): "fixed_si_units"
          for frame in ("manual_frame2", "sen_pollusonic_2")
          for i in (0, 1) for field in ("Unit", "Value")}

DEVIATIONS: dict[tuple[str, int, str], str] = {
    ("ACW_Itron-BM-plus-m", 2, "Value"): "invalid_date",
    ("itron_bm_+m", 2, "Value"): "invalid_date",
    ("siemens_water", 3, "Value"): "invalid_date",
    ("siemens_wfh21", 3, "Value"): "invalid_date",
    ("landis+gyr_ultraheat_t230", 32, "Value"): "invalid_date",
    ("abb_f95", 2, "Value"): "non_bcd_digits",
    ("abb_f95", 3, "Value"): "non_bcd_digits",
    ("SEN_Pollustat", 12, "Unit"): "vife_combinable",
    ("SEN_Pollustat", 13, "Unit"): "vife_combinable",
    **{("landis+gyr_ultraheat_t230", i, field): "vife_combinable"
       for i in (19, 20, 21, 22) for field in ("Unit", "Value")},
    **{("sen_pollutherm", 2, field): "reserved_vif"
       for field in ("Function", "StorageNumber", "Unit", "Quantity", "Value")},
    **_FIXED,
}
