"""Results: the headline table, adapt.json, and PNG plots (matplotlib, no display needed)."""

import json
from pathlib import Path

SYSTEMS = ("si", "si_lhuc", "sat_si_mode", "sat_lhuc", "si_lhuc_oracle")
PAIRS = (("si", "si_lhuc"), ("sat_si_mode", "sat_lhuc"), ("si", "si_lhuc_oracle"),
         ("sat_si_mode", "sat_lhuc_oracle"), ("si", "si_lhuc_online"))


def relative_reduction(before: float, after: float) -> float:
    """Relative WER reduction (positive = better); 0 when there was nothing to reduce."""
    return (before - after) / before if before > 0 else 0.0


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table of WER/CER per system, with the relative change against its baseline
    (and the WER without lexicon snapping, where the outputs were snapped)."""
    baseline = {after: before for before, after in PAIRS}
    raw = any("wer_no_lexicon" in r for r in results.values())
    lines = [f"{'system':<16}{'WER %':>8}{'CER %':>8}{'rel. WER red. %':>17}"
             + (f"{'WER % no lexicon':>18}" if raw else ""), "-" * (49 + 18 * raw)]
    for name, res in results.items():
        base = results.get(baseline.get(name, ""), None)
        rel = (f"{100 * relative_reduction(base['wer'], res['wer']):>17.1f}"
               if base is not None else f"{'':>17}")
        extra = f"{100 * res['wer_no_lexicon']:>18.2f}" if "wer_no_lexicon" in res else ""
        lines.append(f"{name:<16}{100 * res['wer']:>8.2f}{100 * res['cer']:>8.2f}{rel}{extra}")
    return "\n".join(lines)


def markdown(payload: dict, table: str) -> str:
    """adapt.md: the table, the other headline numbers and the command that made them."""
    lines = [f"# LHUC adaptation on {payload['corpus']} ({payload['n_speakers']} test speakers, "
             f"{payload['protocol']} protocol)", "", "```", table, "```", ""]
    if "speakers_improved_detail" in payload:
        d = payload["speakers_improved_detail"]
        lines.append(f"- {payload['best_unsupervised']}: {d['improved']} of {d['n']} speakers "
                     f"improved, {d['unchanged']} unchanged, {d['worse']} worse.")
    for name, groups in payload.get("groups_wer", {}).items():
        parts = ", ".join(f"{g} {100 * w:.2f}%" for g, w in groups.items())
        lines.append(f"- WER by age group, {name}: {parts}")
    if "loop_seconds" in payload:
        lines.append(f"- Adaptation wall time (si_lhuc, all speakers): per-speaker loop "
                     f"{payload['loop_seconds']:.1f} s, batched {payload['batched_seconds']:.1f} s "
                     f"(loop WER {100 * payload['loop_wer']:.2f}%).")
    for name, spks in payload.get("unusable_speakers", {}).items():
        if spks:
            lines.append(f"- {name}: no usable first-pass utterance for {', '.join(spks)} "
                         "(decoded with the SI row).")
    for name, sweep in payload.get("sweeps", {}).items():
        res = ", ".join(f"{k} {100 * v['wer']:.2f}%" for k, v in sweep["results"].items())
        base = sweep.get("baseline_wer")
        base = f" (unadapted {100 * base:.2f}%)" if base is not None else ""
        lines.append(f"- sweep {name}, {sweep['n_speakers']} speakers: {res}{base}")
    lines += ["", f"Device: {payload['device']}, {payload['threads']} threads; "
              f"total {payload['wall_seconds']:.0f} s.", "", "Command:", "", "```",
              payload["command"], "```", ""]
    return "\n".join(lines)


def speakers_improved(before: dict[str, float], after: dict[str, float]) -> dict:
    """How many speakers' WER went down, stayed, went up."""
    common = sorted(set(before) & set(after))
    better = sum(after[s] < before[s] - 1e-12 for s in common)
    worse = sum(after[s] > before[s] + 1e-12 for s in common)
    return {"improved": better, "unchanged": len(common) - better - worse, "worse": worse,
            "n": len(common)}


def write_json(path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_speakers(before: dict[str, float], after: dict[str, float], path, title: str,
                  labels=("before", "after")) -> Path:
    """Per-speaker WER before vs after adaptation (points below the diagonal improved)."""
    plt = _pyplot()
    spks = sorted(set(before) & set(after))
    x = [100 * before[s] for s in spks]
    y = [100 * after[s] for s in spks]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x, y, s=18)
    top = max(x + y + [1.0]) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=0.8)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"WER % {labels[0]}",
           ylabel=f"WER % {labels[1]}", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_sweep(points: dict[str, float], path, title: str, xlabel: str,
               baseline: float | None = None) -> Path:
    """WER % of one ablation (a bar per setting), with the unadapted baseline as a line."""
    plt = _pyplot()
    names = list(points)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar(names, [100 * points[n] for n in names], color="tab:blue")
    if baseline is not None:
        ax.axhline(100 * baseline, color="k", ls="--", lw=0.8, label="unadapted")
        ax.legend()
    low = min([points[n] for n in names] + ([baseline] if baseline is not None else []))
    ax.set(ylabel="WER %", xlabel=xlabel, title=title, ylim=(max(0, 100 * low - 10), None))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
