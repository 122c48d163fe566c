#!/usr/bin/python3
"""Draws a run's metrics.jsonl (written by ocl_pretrain) as one PNG: loss, contrastive
accuracy, learning rate, temperature and, when the kNN monitor ran, kNN top-1.

    python3 scripts/plot_metrics.py runs/quickstart            # writes runs/quickstart/metrics.png
    python3 scripts/plot_metrics.py runs/a/metrics.jsonl -o out.png

Needs matplotlib (Debian: python3-matplotlib, installed by scripts/install-deps.sh).
"""
import argparse
import json
import math
import os
import sys


def load(path):
    steps, epochs, knn = [], [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                print(f"plot_metrics: {path}:{number}: skipping a damaged line", file=sys.stderr)
                continue
            {"step": steps, "epoch": epochs, "knn": knn}.get(record.get("type"), []).append(record)
    return steps, epochs, knn


def series(records, key):
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            xs.append(r["epoch"])
            ys.append(v)
    return xs, ys


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder, or its metrics.jsonl")
    parser.add_argument("-o", "--output", help="PNG to write (default: metrics.png beside the file)")
    args = parser.parse_args()
    path = os.path.join(args.run, "metrics.jsonl") if os.path.isdir(args.run) else args.run
    if not os.path.exists(path):
        sys.exit(f"plot_metrics: no such file: {path}")
    steps, epochs, knn = load(path)
    if not steps:
        sys.exit(f"plot_metrics: {path} holds no step records yet")
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(path)), "metrics.png")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("loss", "contrastive loss"), ("accuracy", "contrastive top-1 (a_i picks b_i)"),
              ("lr", "learning rate"), ("temperature", "temperature T = 1/s")]
    if knn:
        panels.append(("knn_top1", "kNN top-1 on held-out data (%)"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.3 * len(panels)), sharex=True)
    for ax, (key, title) in zip(axes, panels):
        if key == "knn_top1":
            xs, ys = series(knn, key)
            ax.plot(xs, ys, "o-", color="tab:green")
            for x, y in zip(xs, ys):
                ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=8)
        else:
            xs, ys = series(steps, key)
            ax.plot(xs, ys, lw=1, label="per log step")
            if key in ("loss", "accuracy") and epochs:
                ex, ey = series(epochs, key)
                ax.plot(ex, ey, "o-", lw=1.5, label="epoch mean")
                ax.legend(loc="best", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("epoch")
    last = steps[-1]
    fig.suptitle(f"{os.path.dirname(os.path.abspath(path))}: step {last.get('global_step')}, "
                 f"loss {last.get('loss', float('nan')):.4f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    print(f"plot_metrics: wrote {output}")


if __name__ == "__main__":
    main()
