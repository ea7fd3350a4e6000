"""The results as a Markdown table (for the README), one-line progress rows, and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def machine_line(m: dict[str, Any]) -> str:
    flags = ", ".join(f for f in m.get("cpu_flags", []) if f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_int8"))
    return (f"machine: {m['cpu']} ({m['logical_cpus']} logical CPUs{'; ' + flags if flags else ''}), "
            f"{m['threads']} threads, torch {m['torch']}, transformers {m['transformers']}, "
            f"triformers {m['triformers']}, Python {m['python']}")


def floors_line(f: dict[str, float]) -> str:
    if not f:
        return "floors: not measured"
    parts = [f"fp32 GEMM {f['gemm_fp32_flops'] / 1e9:.0f} GFLOP/s"]
    if "gemm_bf16_flops" in f:
        parts.append(f"bf16 GEMM {f['gemm_bf16_flops'] / 1e9:.0f} GFLOP/s")
    parts += [f"read {f['read_bandwidth'] / 1e9:.1f} GB/s (sum of 1 GiB)",
              f"copy {f['copy_bandwidth'] / 1e9:.1f} GB/s"]
    return "floors: " + ", ".join(parts)


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 0.01 else f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    if unit == "MB":
        return f"{v:.0f} MB"
    return f"{v:.1f} {unit}"


def _share(row: dict[str, Any]) -> str:
    a, b = row.get("share_transformers"), row.get("share_triformers")
    if a is None and b is None:
        return ""
    fmt = lambda x: "—" if x is None else f"{100 * x:.1f}%" if x < 0.1 else f"{100 * x:.0f}%"
    return f"{fmt(a)} → {fmt(b)}"


def _speedup(row: dict[str, Any]) -> str:
    if row.get("speedup") is None:
        return "—"
    text = f"{row['speedup']:.2f}x"
    if row.get("target"):
        text += f" ({row['target']} {'met' if row.get('met') else 'NOT met'})"
    return text


def row_line(row: dict[str, Any]) -> str:
    if row.get("skipped") and row.get("transformers") is None:
        return f"{row['label']}: skipped — {row['skipped']}"
    text = (f"{row['label']}: {row['baseline']} {_value(row['transformers'], row['unit'])}, "
            f"triformers {_value(row['triformers'], row['unit'])}, {_speedup(row)}")
    for key, value in (("floor share", _share(row)), ("check", row.get("check")), ("skipped", row.get("skipped"))):
        if value:
            text += f"; {key} {value}"
    return text


def markdown(data: dict[str, Any]) -> str:
    lines = [f"Machine: {machine_line(data['machine'])[len('machine: '):]}",
             f"Floors measured in this run: {floors_line(data['floors'])[len('floors: '):]}",
             f"Command: `{data['command']}` ({data['date']}, {data['seconds']:.0f} s"
             f"{', quick mode' if data['quick'] else ''}). Speed-up = transformers time / triformers time, "
             "from medians of interleaved repetitions in the same process. Share of floor: the machine's best "
             "time for the work (bytes read / read bandwidth for decoding; FLOPs / GEMM FLOP/s for forward and "
             "training) over each library's measured time, transformers → triformers.",
             "",
             "| case | baseline | transformers | triformers | speed-up (target) | share of floor | check |",
             "|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        if row.get("transformers") is None:
            lines.append(f"| {row['label']} | | — | — | skipped: {row['skipped']} | | |")
            continue
        tri = _value(row["triformers"], row["unit"]) if row["triformers"] is not None else f"skipped: {row['skipped']}"
        lines.append(f"| {row['label']} | {row['baseline']} | {_value(row['transformers'], row['unit'])} | {tri} | "
                     f"{_speedup(row)} | {_share(row)} | {row.get('check', '')} |")
    notes = sorted({row["notes"] for row in data["rows"] if row.get("notes")})
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def chart(data: dict[str, Any], path: Path) -> str:
    """Horizontal bars of the speed-ups, with 1x and each row's target marked; needs matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart: skipped (matplotlib is not installed)"
    rows = [r for r in data["rows"] if r.get("speedup") is not None]
    if not rows:
        return "chart: skipped (no row has both measurements)"
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.5))
    ys = range(len(rows))
    colors = ["tab:green" if r.get("met") or (r.get("met") is None and r["speedup"] > 1) else "tab:red" for r in rows]
    ax.barh(list(ys), [r["speedup"] for r in rows], color=colors)
    for y, r in zip(ys, rows, strict=True):
        if r.get("min_speedup"):
            x = r["min_speedup"]
            ax.plot([x, x], [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="gray", linestyle="--")
    names = [r["label"] if " vs " in r["label"] else f"{r['label']} (vs {r['baseline'].replace('transformers', 'tf')})"
             for r in rows]
    ax.set_yticks(list(ys), names,
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over transformers (black tick: target)")
    ax.set_title(f"triformers vs transformers — {data['machine']['cpu']}, {data['machine']['threads']} threads",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"chart: {path}"
