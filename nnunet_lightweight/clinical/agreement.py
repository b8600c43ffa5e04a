"""Agreement of measured against reference EF, EDV and ESV: Pearson r, bias, 95 % limits of agreement, MAE, plots.

Differences are measured - reference; the limits of agreement are bias +- 1.96 SD of the differences (Bland and
Altman). Volumes are compared only where both sides share a unit (mL with mL, px^3 with px^3).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

QUANTITIES = {"EF": "ef", "EDV": "edv", "ESV": "esv"}


def agreement_statistics(measured, reference) -> dict:
    """n, Pearson r, bias, SD of the differences, limits of agreement and MAE of paired values (NaN pairs dropped)."""
    measured, reference = np.asarray(measured, dtype=float), np.asarray(reference, dtype=float)
    valid = np.isfinite(measured) & np.isfinite(reference)
    measured, reference = measured[valid], reference[valid]
    n = int(valid.sum())
    difference = measured - reference
    stats = {
        "n": n,
        "pearson_r": None,
        "bias": None,
        "sd_difference": None,
        "loa_low": None,
        "loa_high": None,
        "mae": None,
    }
    if n == 0:
        return stats
    stats["bias"] = float(difference.mean())
    stats["mae"] = float(np.abs(difference).mean())
    if n >= 2:
        sd = float(difference.std(ddof=1))
        stats.update(sd_difference=sd, loa_low=stats["bias"] - 1.96 * sd, loa_high=stats["bias"] + 1.96 * sd)
    if n >= 3 and measured.std() > 0 and reference.std() > 0:
        stats["pearson_r"] = float(np.corrcoef(measured, reference)[0, 1])
    return stats


def _comparable(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rows with both values present; for volumes also the same unit on both sides."""
    rows = table[np.isfinite(table[column].astype(float)) & np.isfinite(table[f"{column}_ref"].astype(float))]
    if column != "ef":
        rows = rows[rows["volume_unit"] == rows["volume_unit_ref"]]
    return rows


def agreement(table: pd.DataFrame) -> dict:
    """{EF, EDV, ESV: statistics (+ unit)} of an `ef_table`; a quantity without comparable pairs has n = 0."""
    result = {}
    for name, column in QUANTITIES.items():
        rows = _comparable(table, column)
        stats = agreement_statistics(rows[column], rows[f"{column}_ref"])
        units = sorted(set(rows["volume_unit"])) if column != "ef" else ["%"]
        stats["unit"] = units[0] if len(units) == 1 else ("mixed: " + ", ".join(units) if units else None)
        result[name] = stats
    return result


def ef_distribution(table: pd.DataFrame) -> dict:
    """Summary of the measured EF and volumes: range, mean, SD, and counts of implausible values."""
    ef = table["ef"].astype(float)
    return {
        "n": int(len(table)),
        "ef_mean": float(ef.mean()),
        "ef_sd": float(ef.std(ddof=1)) if len(ef) > 1 else None,
        "ef_min": float(ef.min()),
        "ef_median": float(ef.median()),
        "ef_max": float(ef.max()),
        "n_ef_outside_10_90": int(((ef < 10) | (ef > 90)).sum()),
        "n_esv_not_below_edv": int((table["esv"] >= table["edv"]).sum()),
        "methods": {str(k): int(v) for k, v in table["method"].value_counts().items()},
        "volume_units": sorted(set(table["volume_unit"])),
    }


def _label(name: str, unit: str | None) -> str:
    return f"{name} ({unit})" if unit else name


def save_agreement_plots(table: pd.DataFrame, output_dir: Path) -> list[Path]:
    """Bland-Altman and scatter PNGs of each quantity with comparable pairs (`bland_altman_ef.png`, ...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    written = []
    for name, column in QUANTITIES.items():
        rows = _comparable(table, column)
        if len(rows) == 0:
            continue
        measured = rows[column].to_numpy(float)
        reference = rows[f"{column}_ref"].to_numpy(float)
        stats = agreement_statistics(measured, reference)
        unit = "%" if column == "ef" else rows["volume_unit"].iloc[0]
        source = "/".join(sorted(set(rows["ref_source"]) - {""})) or "given"

        figure, axes = plt.subplots(figsize=(6, 4.5))
        mean, difference = (measured + reference) / 2, measured - reference
        axes.scatter(mean, difference, s=14, alpha=0.7, color="tab:blue")
        axes.axhline(stats["bias"], color="tab:red", label=f"bias {stats['bias']:.2f}")
        if stats["loa_low"] is not None:
            for limit in (stats["loa_low"], stats["loa_high"]):
                axes.axhline(limit, color="tab:red", linestyle="--")
            axes.plot(
                [],
                [],
                color="tab:red",
                linestyle="--",
                label=f"95% LoA [{stats['loa_low']:.2f}, {stats['loa_high']:.2f}]",
            )
        axes.axhline(0, color="grey", linewidth=0.8)
        axes.set_xlabel(_label(f"mean of measured and reference {name}", unit))
        axes.set_ylabel(_label(f"measured - reference {name}", unit))
        axes.set_title(f"Bland-Altman, {name}: measured vs {source} (n = {stats['n']})")
        axes.legend(loc="best", fontsize=8)
        figure.tight_layout()
        path = output_dir / f"bland_altman_{column}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)

        figure, axes = plt.subplots(figsize=(5, 5))
        axes.scatter(reference, measured, s=14, alpha=0.7, color="tab:blue")
        low, high = float(min(reference.min(), measured.min())), float(max(reference.max(), measured.max()))
        margin = 0.05 * (high - low or 1.0)
        axes.plot(
            [low - margin, high + margin], [low - margin, high + margin], color="grey", linestyle="--", label="identity"
        )
        axes.set_xlim(low - margin, high + margin)
        axes.set_ylim(low - margin, high + margin)
        axes.set_aspect("equal")
        r = "n/a" if stats["pearson_r"] is None else f"{stats['pearson_r']:.3f}"
        axes.set_title(f"{name}: r = {r}, MAE = {stats['mae']:.2f} (n = {stats['n']})")
        axes.set_xlabel(_label(f"reference {name} from {source}", unit))
        axes.set_ylabel(_label(f"measured {name}", unit))
        axes.legend(loc="upper left", fontsize=8)
        figure.tight_layout()
        path = output_dir / f"scatter_{column}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written


def _format(value, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def agreement_markdown(stats: dict, distribution: dict, problems: list[str], sources: dict[str, str]) -> str:
    """A Markdown report of the agreement statistics, the EF distribution and the skipped patients."""
    lines = ["# Ejection fraction and LV volumes", ""]
    lines += [f"- {name}: `{value}`" for name, value in sources.items() if value]
    units = ", ".join(distribution["volume_units"])
    lines += [
        "",
        f"## Measured values ({distribution['n']} patients, volumes in {units})",
        "",
        f"EF mean {_format(distribution['ef_mean'], 1)} % (SD {_format(distribution['ef_sd'], 1)}), "
        f"median {_format(distribution['ef_median'], 1)}, range {_format(distribution['ef_min'], 1)} to "
        f"{_format(distribution['ef_max'], 1)} %; EF outside 10-90 %: {distribution['n_ef_outside_10_90']}; "
        f"ESV not below EDV: {distribution['n_esv_not_below_edv']}. Methods: "
        + ", ".join(f"{method} {count}" for method, count in distribution["methods"].items())
        + ".",
        "",
    ]
    if any(entry["n"] for entry in stats.values()):
        lines += [
            "## Agreement (measured - reference)",
            "",
            "| | n | Pearson r | bias | SD of differences | 95% limits of agreement | MAE | unit |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, entry in stats.items():
            loa = (
                f"{_format(entry['loa_low'])} to {_format(entry['loa_high'])}" if entry["loa_low"] is not None else "–"
            )
            lines.append(
                f"| {name} | {entry['n']} | {_format(entry['pearson_r'], 3)} | {_format(entry['bias'])} | "
                f"{_format(entry['sd_difference'])} | {loa} | {_format(entry['mae'])} | "
                f"{entry['unit'] or '–'} |"
            )
        lines.append("")
    else:
        lines += ["No reference values: no agreement statistics.", ""]
    if problems:
        lines += ["## Warnings", ""] + [f"- {problem}" for problem in problems] + [""]
    return "\n".join(lines)
