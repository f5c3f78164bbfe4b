"""The report of `wavenet bench` as a markdown table, and the pick of the fastest variant."""

from __future__ import annotations

__all__ = ["format_table", "mark_fastest"]


def mark_fastest(cases: list[dict]) -> None:
    """Set `fastest` on each case: true for the quickest variant of its batch and length."""
    best: dict[tuple, dict] = {}
    for case in cases:
        case["fastest"] = False
        if "samples_per_s" not in case:
            continue
        key = (case["batch"], case["seconds"])
        if key not in best or case["samples_per_s"] > best[key]["samples_per_s"]:
            best[key] = case
    for case in best.values():
        case["fastest"] = True


def _peaks_line(report: dict) -> str:
    peaks = f"fp32 matmul peak {report['matmul_peak_gflops']:,.1f} GFLOP/s"
    if "matmul_peak_gflops_fp16" in report:
        peaks += f", fp16 {report['matmul_peak_gflops_fp16']:,.1f} GFLOP/s"
    return (
        f"{report['device_name']} ({report['device']}, {report['threads']} threads, "
        f"torch {report['torch']}): {peaks}"
    )


def _model_line(role: str, entry: dict) -> str:
    return (
        f"- {role} `{entry['path']}` ({entry['source']}): {entry['parameters']:,} parameters, "
        f"{entry['mflops_per_sample']:.3f} MFLOP/sample, receptive field "
        f"{entry['receptive_field']:,} samples, {entry['sample_rate']:,} Hz"
    )


def _case_row(name: str, case: dict, several: bool) -> str:
    variant = f"**{case['variant']}**" if case["fastest"] and several else case["variant"]
    where = f"| {name} | {variant} | {case['batch']} | {case['seconds']:g} |"
    if "error" in case:
        return f"{where} failed: {case['error'][:80]} | | | | | |"
    return (
        f"{where} {case['real_time_factor']:,.2f} | {case['samples_per_s']:,.0f} | "
        f"{case['gflops']:,.2f} | {100 * case['fraction_of_peak']:.1f} | "
        f"{case['peak_memory_mb']:,.0f} | {case['vs_teacher']:,.0f}x |"
    )


def format_table(report: dict) -> str:
    """Markdown: the device and its peaks, the models, then one row per case and variant.

    Where there are several variants, the fastest of each case is in bold. The teacher is the
    last row.
    """
    teacher = report["teacher"]
    lines = [_peaks_line(report), "", _model_line("teacher", teacher)]
    lines += [_model_line("student", entry) for entry in report["students"].values()]
    lines += [
        "",
        "| model | variant | batch | audio s | x real time | samples/s | GFLOP/s | % of peak "
        "| peak MB | vs teacher |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path, entry in report["students"].items():
        several = len({case["variant"] for case in entry["cases"]}) > 1
        # The variants of one case side by side (a stable sort keeps their order).
        cases = sorted(entry["cases"], key=lambda case: (case["seconds"], case["batch"]))
        lines += [_case_row(f"student `{path}`", case, several) for case in cases]
    lines.append(
        f"| teacher `{teacher['path']}` (incremental) | fp32 | 1 | "
        f"{teacher['seconds']:.3g} | "
        f"{teacher['samples_per_s'] / teacher['sample_rate']:,.4f} | "
        f"{teacher['samples_per_s']:,.0f} | {teacher['gflops']:,.3f} | "
        f"{100 * teacher['fraction_of_peak']:.2f} | {teacher['peak_memory_mb']:,.0f} | 1x |"
    )
    return "\n".join(lines)
