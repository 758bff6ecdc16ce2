"""Figures of `bench_vs_milvus` from its raw measurements: recall, q/s at a target recall, ratios,
the printed table and the plots.

Pure functions over plain data (the JSON the benchmark writes), so a results file can be re-read
and re-plotted (`python -m bench.vs_milvus_report bench/results/vs_milvus-medium.json`) without
running anything again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DOCS = Path(__file__).resolve().parent.parent / "docs"


def recall_at_k(found: Sequence[Sequence[int]], truth: npt.NDArray[np.int64]) -> float:
    """Mean over queries of |found top-k ∩ true top-k| / k (k = truth's width)."""
    if len(found) != len(truth):
        raise ValueError(f"{len(found)} answers for {len(truth)} queries")
    k = int(truth.shape[1])
    hits = sum(len(set(map(int, f[:k])) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))


@dataclass(frozen=True)
class AtRecall:
    """q/s of one system at `target` recall, interpolated between the sweep points around it."""

    target: float
    qps: float
    ef_low: int | None  # the point below the target (None: the smallest ef already reaches it)
    ef_high: int
    bound: str  # "interpolated", or "lower bound" when even the smallest ef is above the target

    def describe(self) -> str:
        efs = f"ef {self.ef_high}" if self.ef_low is None else f"ef {self.ef_low}–{self.ef_high}"
        return f"{self.qps:,.0f} ({efs}{', lower bound' if self.bound != 'interpolated' else ''})"


def qps_at_recall(points: Sequence[tuple[int, float, float]], target: float) -> AtRecall | None:
    """`points` = (ef, recall, q/s) of one sweep. Walking up in ef, the first point whose recall
    reaches `target` and the one before it bracket the target; q/s is linear in recall between
    them. None if no point reaches the target (the sweep must go higher)."""
    ordered = sorted(points)
    for i, (ef, recall, qps) in enumerate(ordered):
        if recall >= target:
            if i == 0:
                return AtRecall(target, qps, None, ef, "lower bound")
            ef0, r0, q0 = ordered[i - 1]
            share = (target - r0) / (recall - r0) if recall > r0 else 1.0
            return AtRecall(target, q0 + share * (qps - q0), ef0, ef, "interpolated")
    return None


def sweep_points(result: dict[str, Any], system: str, batch: int) -> list[tuple[int, float, float]]:
    """(ef, recall, best q/s over rounds) of one system and batch size from the results JSON."""
    return [
        (int(p["ef"]), float(p["recall"]), max(p["qps_rounds"])) for p in result["sweeps"][system][str(batch)]
    ]


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """q/s at the target recall per system and batch, and the ratios the issue asks for."""
    target = float(result["target_recall"])
    systems = list(result["systems"])
    at: dict[str, dict[str, Any]] = {}
    for name in systems:
        at[name] = {}
        for batch in result["batches"]:
            found = qps_at_recall(sweep_points(result, name, batch), target)
            at[name][str(batch)] = None if found is None else found.__dict__
    summary: dict[str, Any] = {"target_recall": target, "qps_at_target": at, "ratios": {}}
    ratios = summary["ratios"]

    def qps(name: str, batch: int) -> float | None:
        entry = at.get(name, {}).get(str(batch))
        return None if entry is None else float(entry["qps"])

    for batch in result["batches"]:
        milvus, vl, bare = qps("milvus", batch), qps("vectorload", batch), qps("bare", batch)
        if milvus and vl:
            ratios[f"search_qps_vectorload_over_milvus_batch{batch}"] = vl / milvus
        if milvus and bare:
            ratios[f"search_qps_bare_over_milvus_batch{batch}"] = bare / milvus
        if vl and bare:
            ratios[f"search_qps_vectorload_over_bare_batch{batch}"] = vl / bare
    # every querynode system (JSON, MessagePack) against Milvus, and against bare hnswlib with the
    # threads the querynode searched with ("same number of threads")
    for name in result["systems"]:
        if not name.startswith("vectorload") or name == "vectorload":
            continue
        for batch in result["batches"]:
            milvus, vl = qps("milvus", batch), qps(name, batch)
            if milvus and vl:
                ratios[f"search_qps_{name}_over_milvus_batch{batch}"] = vl / milvus
    for name, info in result["systems"].items():
        threads = info.get("search_threads")
        if not name.startswith("vectorload") or not isinstance(threads, int):
            continue
        same = "bare" if threads == 1 else f"bare-t{threads}"
        for batch in result["batches"]:
            vl, bare = qps(name, batch), qps(same, batch)
            if vl and bare:
                ratios[f"search_qps_{name}_over_{same}_batch{batch}"] = vl / bare
    load = result["load"]
    memory: dict[str, dict[str, float]] = {}
    for name, entry in load.items():
        first = entry["rss_rounds"][0]
        if first.get("before_load") is None or first.get("after_load") is None:
            continue
        added = first["after_load"] - first["before_load"]
        serving = first["after_searches"] - first["before_load"]
        memory[name] = {
            "rss_fresh": first["before_load"],
            "rss_loaded": first["after_load"],
            "rss_added_first_load": added,
            "bytes_per_row_first_load": added / result["rows"],
            "rss_added_serving": serving,
            "bytes_per_row_serving": serving / result["rows"],
        }
    summary["memory"] = memory
    if "milvus" in load and "vectorload" in load:
        m, v = load["milvus"], load["vectorload"]
        ratios["load_seconds_milvus_over_vectorload"] = min(m["load_seconds"]) / min(v["load_seconds"])
        ratios["release_seconds_milvus_over_vectorload"] = min(m["release_seconds"]) / min(
            v["release_seconds"]
        )
    if "milvus" in memory and "vectorload" in memory:
        for key in ("rss_added_first_load", "rss_added_serving", "rss_loaded"):
            ratios[f"{key}_vectorload_over_milvus"] = memory["vectorload"][key] / memory["milvus"][key]
    return summary


def _seconds(values: Sequence[float] | None) -> str:
    if not values:
        return "—"
    return f"{min(values):.2f} s (median {float(np.median(values)):.2f})"


def _times(ratio: float | None, fmt: str = "{:.2f}×") -> str:
    return "—" if ratio is None else fmt.format(ratio)


def table(result: dict[str, Any]) -> str:
    """The figures side by side (markdown); the last column is vectorload / Milvus."""
    summary, ratios = result["summary"], result["summary"]["ratios"]
    names = list(result["systems"])
    header = ["", *(result["systems"][n]["label"] for n in names), "vectorload / Milvus"]
    rows: list[list[str]] = []
    for batch in result["batches"]:
        cells = []
        for name in names:
            entry = summary["qps_at_target"][name][str(batch)]
            cells.append("not reached" if entry is None else AtRecall(**entry).describe())
        ratio = ratios.get(f"search_qps_vectorload_over_milvus_batch{batch}")
        title = f"search q/s at recall@{result['top_k']} = {summary['target_recall']}, batch {batch}"
        rows.append([title, *cells, _times(ratio)])
    load, memory = result["load"], summary["memory"]
    for key, title in (("load_seconds", "load wall time, best"), ("release_seconds", "release, best")):
        ratio = ratios.get(key.replace("_seconds", "_seconds_milvus_over_vectorload"))
        cells = [_seconds(load[n].get(key)) if n in load else "—" for n in names]
        rows.append([title, *cells, "—" if ratio is None else f"{1 / ratio:.2f}× ({ratio:.1f}× faster)"])
    for key, title in (
        ("rss_added_first_load", "RSS added by loading (first load, fresh process)"),
        ("rss_added_serving", "RSS added once serving (after the first round's searches)"),
    ):
        per_row = key.replace("rss_added", "bytes_per_row")
        cells = [
            f"{memory[n][key] / 1e6:+,.0f} MB ({memory[n][per_row]:,.0f} B/row)" if n in memory else "—"
            for n in names
        ]
        rows.append([title, *cells, _times(ratios.get(f"{key}_vectorload_over_milvus"))])
    cells = [
        f"{memory[n]['rss_loaded'] / 1e6:,.0f} MB ({memory[n]['rss_fresh'] / 1e6:,.0f} MB before)"
        if n in memory
        else "—"
        for n in names
    ]
    rows.append(["RSS of the whole process with the collection loaded", *cells,
                 _times(ratios.get("rss_loaded_vectorload_over_milvus"))])  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


COLORS = {
    "milvus": "tab:blue",
    "vectorload": "tab:orange",
    "vectorload-msgpack": "tab:brown",
    "vectorload-proxy": "tab:red",
    "bare": "tab:green",
    "bare-t2": "tab:olive",
    "proxy": "tab:red",
}


def plot(result: dict[str, Any], out_dir: Path = DOCS) -> list[Path]:
    """docs/bench-vs-milvus-<size>-search.png (recall vs q/s, one panel per batch size) and
    docs/bench-vs-milvus-<size>-load.png (load / release wall time and RSS added, per system)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size, target, k = result["size"], result["summary"]["target_recall"], result["top_k"]
    names = list(result["systems"])
    out_dir.mkdir(parents=True, exist_ok=True)

    def short(name: str) -> str:
        return str(result["systems"][name].get("short", name))

    paths = []

    batches = result["batches"]
    fig, axes = plt.subplots(1, len(batches), figsize=(6.2 * len(batches), 4.6), squeeze=False)
    for ax, batch in zip(axes[0], batches, strict=True):
        for name in names:
            points = sweep_points(result, name, batch)
            if not points:
                continue
            _, recalls, qps = zip(*points, strict=True)
            ax.plot(recalls, qps, "o-", color=COLORS.get(name), label=result["systems"][name]["label"])
            for ef, r, q in points:
                ax.annotate(str(ef), (r, q), textcoords="offset points", xytext=(3, 3), fontsize=6)
        ax.axvline(target, color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel(f"recall@{k}")
        ax.set_ylabel("queries per second (log)")
        ax.set_title(f"{size}: batch {batch} (labels: ef)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"vectorload vs Milvus {result['milvus_version']}: {result['rows']:,} rows, "
        f"{result['dim']}-d, one client, best of {result['rounds']} rounds"
    )
    fig.tight_layout()
    path = out_dir / f"bench-vs-milvus-{size}-search.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    load = result["load"]
    shown = [n for n in names if n in load]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.38
    xs = np.arange(len(shown))
    loads = [min(load[n]["load_seconds"]) for n in shown]
    released = [i for i, n in enumerate(shown) if load[n].get("release_seconds")]
    load_x = np.where(np.isin(np.arange(len(shown)), released), xs - width / 2, xs)
    bars = ax_t.bar(load_x, loads, width, label="load (best)")
    ax_t.bar_label(bars, fmt="%.2f s", fontsize=7)
    bars = ax_t.bar(
        xs[released] + width / 2,
        [min(load[shown[i]]["release_seconds"]) for i in released],
        width,
        label="release (best)",
    )
    ax_t.bar_label(bars, fmt="%.2f s", fontsize=7)
    ax_t.set_xticks(xs, [short(n) for n in shown], fontsize=8)
    ax_t.set_ylabel("wall time, s")
    ax_t.set_title(f"{size}: load (pk + vectors) and release")
    ax_t.legend(fontsize=8)
    memory = result["summary"]["memory"]
    with_rss = [n for n in shown if n in memory]
    xs_m = np.arange(len(with_rss))
    for offset, key, title in (
        (-width / 2, "rss_added_first_load", "after the first load"),
        (width / 2, "rss_added_serving", "once serving (after searches)"),
    ):
        bars = ax_m.bar(xs_m + offset, [memory[n][key] / 1e6 for n in with_rss], width, label=title)
        ax_m.bar_label(bars, fmt="%+.0f MB", fontsize=7)
    ax_m.set_xticks(xs_m, [short(n) for n in with_rss], fontsize=8)
    ax_m.legend(fontsize=8)
    ax_m.set_ylabel("MB")
    ax_m.set_title(f"RSS added by loading {result['rows']:,} rows")
    fig.tight_layout()
    path = out_dir / f"bench-vs-milvus-{size}-load.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def main(argv: list[str]) -> int:
    """Print the table and redraw the plots of a results file; `--update` also rewrites its summary
    (after a change to this module)."""
    update = "--update" in argv
    files = [a for a in argv if a != "--update"]
    if len(files) != 1:
        print(
            "usage: python -m bench.vs_milvus_report [--update] bench/results/vs_milvus-<size>.json",
            file=sys.stderr,
        )
        return 2
    path = Path(files[0])
    result = json.loads(path.read_text())
    result["summary"] = summarise(result)
    if update:
        path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    for path in plot(result):
        print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
