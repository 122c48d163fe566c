#!/usr/bin/python3
"""Draws a run's metrics.jsonl as one PNG. For pre-training (ocl_pretrain): loss, contrastive
accuracy, learning rate, temperature and, when the kNN monitor ran, kNN top-1 with the epochs
the shortcut alarm fired at marked. For a linear probe (ocl_linprobe) or a fine-tuning run
(ocl_finetune): training loss, learning rate and validation top-1 / top-5 per epoch (and the
EMA's top-1 when there is one).

    python3 scripts/plot_metrics.py runs/quickstart            # writes runs/quickstart/metrics.png
    python3 scripts/plot_metrics.py runs/quickstart/linprobe   # a linear probe
    python3 scripts/plot_metrics.py runs/a/metrics.jsonl -o out.png
    python3 scripts/plot_metrics.py runs/a runs/b runs/c -o compare.png   # several runs

Several runs are overlaid in one PNG (default: metrics-comparison.png in the folder the runs
share): loss, contrastive accuracy, kNN top-1 and evaluation top-1, each panel with the runs
that logged it. The legend names each run and the config keys in which the runs differ (read
from each run's config.yaml).

Needs matplotlib and PyYAML (Debian: python3-matplotlib, python3-yaml, installed by
scripts/install-deps.sh).
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
    try:
        f = open(path, "rb")
    except OSError as e:
        sys.exit(f"plot_metrics: cannot read {path}: {e.strerror or e}")
    with f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
                if not line:
                    continue
                record = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                print(f"plot_metrics: {path}:{number}: skipping a damaged line", file=sys.stderr)
                continue
            if not isinstance(record, dict):
                print(f"plot_metrics: {path}:{number}: skipping a line that is no record",
                      file=sys.stderr)
                continue
            records.setdefault(record.get("type"), []).append(record)
    return records


def number(v):
    """A finite number of a record, or None (a missing, null, NaN or wrongly typed value)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if math.isnan(v) or math.isinf(v) else v


def series(records, key):
    xs, ys = [], []
    for r in records:
        x, y = number(r.get("epoch")), number(r.get(key))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def metrics_path(run):
    path = os.path.join(run, "metrics.jsonl") if os.path.isdir(run) else run
    if not os.path.exists(path):
        sys.exit(f"plot_metrics: no such file: {path}")
    return path


def run_records(path):
    """(kind, step records, epoch records, knn records, all records) of one metrics.jsonl; kind
    is "finetune", "linprobe" or None (pre-training)."""
    records = load(path)
    kind = next((k for k in ("finetune", "linprobe")
                 if records.get(k + "_step") or records.get(k + "_epoch")), None)
    steps = records.get(kind + "_step" if kind else "step", [])
    epochs = records.get(kind + "_epoch" if kind else "epoch", [])
    if kind and not steps:
        steps = epochs  # a probe on cached features logs epochs only
    if not steps:
        sys.exit(f"plot_metrics: {path} holds no step records yet")
    return kind, steps, epochs, records.get("knn", []), records


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_one(path, output):
    kind, steps, epochs, knn, records = run_records(path)
    output = output or os.path.join(os.path.dirname(os.path.abspath(path)), "metrics.png")
    plt = pyplot()

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
            alarms = series([r for r in records.get("shortcut", []) if r.get("alarm") is True],
                            "knn_top1")
            if key == "knn_top1" and alarms[0]:
                ax.plot(alarms[0], alarms[1], "x",
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
    last_loss = number(last.get("loss"))
    fig.suptitle(f"{os.path.dirname(os.path.abspath(path))}: step {last.get('global_step')}, "
                 f"loss {float('nan') if last_loss is None else last_loss:.4f}", fontsize=10)
    fig.tight_layout()
    save(fig, output)
    print(f"plot_metrics: wrote {output}")


# ---------------------------------------------------------------- several runs
# Keys that name where a run is, not what it does: never a difference worth a legend entry.
PLACE_KEYS = ("train.output_dir", "finetune.output_dir", "linprobe.output_dir", "data.cache_dir")
LEGEND_KEYS = 4  # differing keys shown per run; the rest are counted


def flat_config(path):
    """config.yaml beside metrics.jsonl as {"section.key": value}; {} when there is none."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.yaml")
    if not os.path.exists(config_path):
        return {}
    import yaml
    try:
        with open(config_path) as f:
            tree = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        print(f"plot_metrics: {config_path}: not readable YAML ({e}); no config in the legend",
              file=sys.stderr)
        return {}
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            else:
                flat[name] = value
    walk(tree, "")
    return flat


def differing_keys(configs):
    """The keys whose values are not the same in every run that has a config.yaml (a key one of
    them lacks differs); a run without one is left out rather than making every key differ."""
    configs = [c for c in configs if c]
    if len(configs) < 2:
        return []
    keys = sorted(set().union(*configs))
    missing = object()
    return [k for k in keys if k not in PLACE_KEYS and
            len({repr(c.get(k, missing)) for c in configs}) > 1]


def run_label(name, config, keys):
    if not config:
        return f"{name}: no config.yaml"
    shown = [f"{k}={config.get(k, '-')}" for k in keys[:LEGEND_KEYS]]
    if len(keys) > LEGEND_KEYS:
        shown.append(f"+{len(keys) - LEGEND_KEYS} more")
    return f"{name}: {', '.join(shown)}" if shown else name


def run_names(paths):
    """Each run's folder relative to the folder they share (runs/a, runs/b -> a, b)."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    common = os.path.commonpath(folders)
    names = [os.path.relpath(f, common) if f != common else os.path.basename(f) for f in folders]
    return names, common


def plot_many(paths, output):
    runs = [run_records(p) for p in paths]
    configs = [flat_config(p) for p in paths]
    keys = differing_keys(configs)
    names, common = run_names(paths)
    labels = [run_label(n, c, keys) for n, c in zip(names, configs)]
    output = output or os.path.join(common, "metrics-comparison.png")
    # (title, [(run index, xs, ys, style)]) for each panel some run has data for.
    panels = []

    def panel(title, curves):
        curves = [c for c in curves if c[1]]
        if curves:
            panels.append((title, curves))
    panel("training loss (per log step)",
          [(i, *series(r[1], "loss"), "-") for i, r in enumerate(runs)])
    panel("contrastive top-1 (a_i picks b_i)",
          [(i, *series(r[1], "accuracy"), "-") for i, r in enumerate(runs) if r[0] is None])
    panel("kNN top-1 on held-out data (%)",
          [(i, *series(r[3], "knn_top1"), "o-") for i, r in enumerate(runs)])
    panel("evaluation top-1 (%)",
          [(i, *series(r[2], "top1"), "o-") for i, r in enumerate(runs) if r[0] is not None])

    plt = pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    legend_h = 0.15 + 0.22 * len(runs)  # inches below the panels for the legend
    fig_h = 2.4 * len(panels) + 0.3 + legend_h
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, fig_h), sharex=True, squeeze=False)
    for ax, (title, curves) in zip(axes[:, 0], panels):
        for i, xs, ys, style in curves:
            ax.plot(xs, ys, style, lw=1.2, markersize=4, color=colors[i % len(colors)])
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("epoch")
    handles = [plt.Line2D([], [], color=colors[i % len(colors)], lw=2) for i in range(len(runs))]
    fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=1, frameon=False)
    differ = f"{len(keys)} config key{'s' if len(keys) != 1 else ''}"
    fig.suptitle(f"{len(runs)} runs in {common}; " +
                 (f"they differ in {differ}" if keys else "their configs are the same"),
                 fontsize=10)
    fig.tight_layout(rect=(0, legend_h / fig_h, 1, 1))
    save(fig, output)
    print(f"plot_metrics: wrote {output} ({len(runs)} runs; differing keys: "
          f"{', '.join(keys) if keys else 'none'})")
    for label in labels:
        print(f"  {label}")


def png_path(output):
    """Where -o OUTPUT writes: a folder gets metrics.png inside it, a name without an extension
    gets .png (what matplotlib would add without saying)."""
    if os.path.isdir(output):
        return os.path.join(output, "metrics.png")
    return output if os.path.splitext(output)[1] else output + ".png"


def save(fig, output):
    try:
        fig.savefig(output, dpi=100)
    except OSError as e:
        sys.exit(f"plot_metrics: cannot write {output}: {e.strerror or e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="run",
                        help="a run folder, or its metrics.jsonl; several are overlaid")
    parser.add_argument("-o", "--output", help="PNG to write (default: metrics.png beside the "
                        "file; metrics-comparison.png in the runs' shared folder for several)")
    args = parser.parse_args()
    paths = [metrics_path(r) for r in args.runs]
    if args.output:
        args.output = png_path(args.output)
    if len(paths) == 1:
        plot_one(paths[0], args.output)
    else:
        plot_many(paths, args.output)


if __name__ == "__main__":
    main()
