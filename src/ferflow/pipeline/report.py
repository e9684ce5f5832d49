"""The report index: one self-contained page over the whole pipeline run.

    python -m ferflow.pipeline.report --out reports/index.html

It links every stage report, shows the headline metrics and key figures (embedded, so
the page works wherever it is opened), the params, the code and data versions (git
revision and the dvc.lock hashes) and the environment the model was trained in.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from ferflow import paths
from ferflow.io import write_text
from ferflow.pipeline.headline import LABELS, committed_headline, print_summary, read_headline
from ferflow.pipeline.stage import STAGES

STAGE_REPORTS = {stage: f"{notebook}.html" for stage, (notebook, _) in STAGES.items()}
FIGURES = {
    "Training curves": paths.figure("training_curves"),
    "Confusion matrix, row-normalised (test split)": paths.figure("confusion_matrix_normalised"),
    "F1 per emotion (test split)": paths.figure("per_class_f1"),
    "Reliability diagram (test split)": paths.figure("reliability"),
    "Accuracy under corruption (test split)": paths.figure("robustness_heatmap"),
}
LIBRARIES = ("keras", "tensorflow", "jax", "torch", "numpy", "dvc", "dvclive", "papermill", "nbconvert")

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; font-size: 0.92em; }
th { background: #f2f2f2; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure img { max-width: 520px; border: 1px solid #ddd; }
figure.wide img { max-width: 100%; }
tr.changed td { font-weight: bold; background: #fff8e1; }
p.lead { font-size: 1.05em; line-height: 1.5; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "n/a"


def headline_metrics(root: Path) -> list[tuple[str, str]]:
    evaluation = _read_json(root / paths.results("evaluate"))
    training = _read_json(root / paths.results("train"))
    robustness = _read_json(root / paths.results("robustness"))
    latency = _read_json(root / paths.results("latency"))
    rows = [
        ("test faces", str(evaluation.get("n_samples", "n/a"))),
        ("test accuracy", _percent(evaluation.get("accuracy"))),
        ("test macro F1", _percent(evaluation.get("macro", {}).get("f1"))),
        ("test weighted F1", _percent(evaluation.get("weighted", {}).get("f1"))),
        ("validation accuracy (kept epoch)", _percent(training.get("val_accuracy"))),
        ("epochs run (kept)", f"{training.get('epochs_run', 'n/a')} ({training.get('kept_epoch', 'n/a')})"),
    ]
    if "tta" in evaluation:
        rows.append((f"test accuracy with TTA ({evaluation['tta']['mode']})", _percent(evaluation["tta"]["accuracy"])))
    if "calibration" in evaluation:
        rows.append(("expected calibration error (15 bins)", f"{evaluation['calibration']['ece']:.4f}"))
    for name, result in robustness.get("gaussian_noise", {}).items():
        rows.append((f"accuracy, Gaussian noise {name.replace('sigma_', 'σ=')}", _percent(result["accuracy"])))
    if "mean_corruption_accuracy" in robustness:
        rows.append(("mean corruption accuracy", _percent(robustness["mean_corruption_accuracy"])))
    if latency:
        rows.append(("latency per face, single (p50)", f"{latency['single_ms_p50']:.2f} ms"))
    return rows


WIDE_FIGURES = {"Training curves"}  # several panels side by side: the page's whole width


def figure_tags(root: Path) -> str:
    tags = []
    for caption, path in FIGURES.items():
        file = root / path
        if file.exists():
            data = base64.b64encode(file.read_bytes()).decode("ascii")
            wide = ' class="wide"' if caption in WIDE_FIGURES else ""
            tags.append(
                f'<figure{wide}><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    return "".join(tags)


def params_rows(root: Path) -> list[tuple[str, str]]:
    params = yaml.safe_load((root / paths.PARAMS).read_text(encoding="utf-8")) or {}
    return [(f"{section}.{key}", value) for section, values in params.items() for key, value in values.items()]


def default_params(root: Path) -> dict[str, Any]:
    """The shipped defaults by key: the `quick` preset's values, and for the keys no preset sets,
    params.yaml as committed (so that a change not yet committed shows too)."""
    shown = subprocess.run(["git", "show", f"HEAD:{paths.PARAMS}"], cwd=root, capture_output=True, text=True)
    committed = yaml.safe_load(shown.stdout) if shown.returncode == 0 else {}
    preset_file = root / paths.PRESETS / "quick.yaml"
    preset = yaml.safe_load(preset_file.read_text(encoding="utf-8")) if preset_file.exists() else {}
    defaults = {}
    for source in (committed or {}, preset or {}):
        defaults.update({f"{section}.{key}": v for section, values in source.items() for key, v in values.items()})
    return defaults


def params_table(root: Path) -> str:
    """Every param; those that differ from the shipped defaults are marked and show the default."""
    defaults = default_params(root)
    rows, changed = [], 0
    for key, value in params_rows(root):
        differs = key in defaults and defaults[key] != value
        changed += differs
        cells = (key, value, defaults[key] if differs else "")
        row_class = ' class="changed"' if differs else ""
        rows.append(f"<tr{row_class}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    note = f"<p>{changed} value(s) differ from the shipped defaults (highlighted, the default beside them).</p>"
    return note + "<table><tr><th>key</th><th>value</th><th>default</th></tr>" + "".join(rows) + "</table>"


def run_paragraph(root: Path) -> str:
    """One paragraph: what this run found, and how it compares with the committed run."""
    current, committed = read_headline(root), committed_headline(root)
    if not current:
        return "<p class='lead'>This run has no headline metrics yet: the evaluate stage has not run.</p>"
    training = _read_json(root / paths.results("train"))
    evaluation = _read_json(root / paths.results("evaluate"))
    params = dict(params_rows(root))
    found = (
        f"This run trained <code>{html.escape(str(params.get('train.arch', '?')))}</code> for "
        f"{training.get('epochs_run', '?')} epochs on <code>{html.escape(str(params.get('data.source', '?')))}</code>"
        f" and scored {_percent(current.get('acc_test'))} on {evaluation.get('n_samples', '?')} test faces"
        f" ({_percent(current.get('acc_tta'))} with test-time augmentation), macro F1 {current.get('macro_f1', 0):.3f}"
    )
    if "acc_noise" in current:
        found += f", {_percent(current['acc_noise'])} under noise σ 0.1"
    found += "."
    if not committed:
        return f"<p class='lead'>{found} There is no committed run to compare with.</p>"
    moved = [
        (LABELS[key], current[key] - committed[key])
        for key in ("acc_test", "acc_tta", "macro_f1", "acc_noise")
        if key in current and key in committed
    ]
    if all(abs(delta) < 5e-5 for _, delta in moved):
        return f"<p class='lead'>{found} It gives the committed run's figures.</p>"
    changes = ", ".join(f"{label} {100 * delta:+.1f} points" for label, delta in moved)
    return f"<p class='lead'>{found} Against the committed run: {changes}.</p>"


def git_revision(root: Path) -> str:
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return revision + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"


def lock_rows(root: Path) -> list[tuple[str, str, str, str]]:
    """(stage, dep/out, path, md5) for every hashed path in dvc.lock."""
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8")) if (root / "dvc.lock").exists() else {}
    rows = []
    for stage, entry in (lock or {}).get("stages", {}).items():
        for kind in ("deps", "outs"):
            for item in entry.get(kind, []):
                rows.append((stage, kind[:-1], item["path"], item.get("md5", "")))
    return rows


def environment_rows(root: Path) -> list[tuple[str, str]]:
    trained = _read_json(root / Path(paths.MODEL).with_suffix(".json")).get("environment", {})  # its sidecar
    rows = [(f"training: {key}", value) for key, value in trained.items()]
    for name in LIBRARIES:
        try:
            rows.append((f"report: {name}", metadata.version(name)))
        except metadata.PackageNotFoundError:
            pass
    return rows


def build_index(root: Path) -> str:
    links = "".join(f'<li><a href="{file}">{stage}</a></li>' for stage, file in STAGE_REPORTS.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>FER-2013 pipeline report</title>
<style>{STYLE}</style></head><body>
<h1>FER-2013 pipeline report</h1>
{run_paragraph(root)}
<p>Data: <code>{html.escape(str(dict(params_rows(root)).get("data.source", "?")))}</code>.
Code: <code>{html.escape(git_revision(root))}</code>.</p>
<h2>Stage reports</h2><ul>{links}</ul>
<h2>Headline metrics</h2>{_table(headline_metrics(root), ("metric", "value"))}
<h2>Key figures</h2>{figure_tags(root)}
<h2>Params</h2>{params_table(root)}
<h2>Data and output versions (dvc.lock)</h2>
<details><summary>{len(lock_rows(root))} hashed inputs and outputs of the stages</summary>
{_table(lock_rows(root), ("stage", "kind", "path", "md5"))}</details>
<h2>Environment</h2>{_table(environment_rows(root), ("item", "value"))}
</body></html>
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--out", type=Path, default=Path(paths.REPORT_INDEX))
    args = parser.parse_args()
    write_text(args.out, build_index(args.root))
    print(f"wrote {args.out}")
    print_summary(args.root)


if __name__ == "__main__":
    main()
