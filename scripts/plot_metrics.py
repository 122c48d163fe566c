#!/usr/bin/python3
"""Draws a run's metrics.jsonl as one PNG. For pre-training (ocl_pretrain): loss, contrastive
accuracy, learning rate, temperature and, when the kNN monitor ran, kNN top-1 with the epochs
the shortcut alarm fired at marked. For a linear probe (ocl_linprobe) or a fine-tuning run
(ocl_finetune): training loss, learning rate and validation top-1 / top-5 per epoch (and the
EMA's top-1 when there is one).

    python3 scripts/plot_metrics.py runs/quickstart            # writes runs/quickstart/metrics.png
    python3 scripts/plot_metrics.py runs/quickstart/linprobe   # a linear probe
    python3 scripts/plot_metrics.py runs/a/metrics.jsonl -o out.png

Needs matplotlib (Debian: python3-matplotlib, installed by scripts/install-deps.sh).
"""
import argparse
import json
import math
import os
import sys


def load(path):
    """Records by type: pre-training's "step", "epoch", "knn", "shortcut", and the evaluation apps'
    "<kind>_step" / "<kind>_epoch" (kind: linprobe, finetune)."""
    records = {}
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
            records.setdefault(record.get("type"), []).append(record)
    return records


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
    records = load(path)
    kind = next((k for k in ("finetune", "linprobe")
                 if records.get(k + "_step") or records.get(k + "_epoch")), None)
    steps = records.get(kind + "_step" if kind else "step", [])
    epochs = records.get(kind + "_epoch" if kind else "epoch", [])
    if kind and not steps:
        steps = epochs  # a probe on cached features logs epochs only
    knn = records.get("knn", [])
    if not steps:
        sys.exit(f"plot_metrics: {path} holds no step records yet")
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(path)), "metrics.png")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if kind:
        panels = [("loss", f"{kind} training loss"), ("lr", "learning rate"),
                  ("top1", "validation accuracy (%)")]
    else:
        panels = [("loss", "contrastive loss"), ("accuracy", "contrastive top-1 (a_i picks b_i)"),
                  ("lr", "learning rate"), ("temperature", "temperature T = 1/s")]
        if knn:
            panels.append(("knn_top1", "kNN top-1 on held-out data (%)"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.3 * len(panels)), sharex=True)
    for ax, (key, title) in zip(axes, panels):
        if key in ("knn_top1", "top1"):
            sources = [("knn_top1", knn, "tab:green", "kNN top-1")] if key == "knn_top1" else [
                ("top1", epochs, "tab:green", "top-1"), ("top5", epochs, "tab:olive", "top-5"),
                ("ema_top1", epochs, "tab:purple", "EMA top-1")]
            for field, rows, color, label in sources:
                xs, ys = series(rows, field)
                if not xs:
                    continue
                ax.plot(xs, ys, "o-", color=color, label=label)
                for x, y in zip(xs, ys):
                    ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 5),
                                ha="center", fontsize=8)
            # The shortcut alarm (ocl_pretrain): epochs where the contrastive accuracy was high
            # while kNN stayed flat, marked on the kNN curve.
            alarms = [r for r in records.get("shortcut", []) if r.get("alarm")]
            if key == "knn_top1" and alarms:
                ax.plot([r["epoch"] for r in alarms], [r["knn_top1"] for r in alarms], "x",
                        color="tab:red", markersize=10, mew=2, label="shortcut alarm")
                ax.legend(loc="best", fontsize=8)
            if key == "top1":
                ax.legend(loc="best", fontsize=8)
        else:
            xs, ys = series(steps, key)
            ax.plot(xs, ys, lw=1, label="per log step")
            # Fine-tuning records of earlier versions named the epoch's loss train_loss.
            old = key == "loss" and epochs and "train_loss" in epochs[0]
            epoch_key = "train_loss" if old else key
            if key in ("loss", "accuracy") and epochs:
                ex, ey = series(epochs, epoch_key)
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
