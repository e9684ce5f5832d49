"""Run the pipeline's stages without a shell hop for any parameter value.

    python -m ferflow.pipeline.stage check          # validate params.yaml, write params/checked/<section>.json
    python -m ferflow.pipeline.stage run train      # execute notebooks/03_train.ipynb with its sections, render HTML
    python -m ferflow.pipeline.stage check-lock     # say whether dvc.lock can be read (a killed dvc empties it)

`check` is the pipeline's first stage and every other stage depends on its output, so a bad
value stops `dvc repro` before DVC removes any other stage's outputs. It writes one file per
section, so a changed `train.*` value changes only the train file and reruns only train and
what follows it.

`run` hands each section to papermill as one dict (a Python value, never a command-line
string), streams what the notebook prints to the terminal (one line per training epoch; its
tables and figures go to the report) and renders the executed notebook to HTML. When a cell
fails, the first line printed is the reason, not a traceback; the executed notebook keeps the full one.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ferflow import paths
from ferflow.io import read_json, remove_partial_files, write_json, write_text
from ferflow.pipeline.params import SECTIONS, ParamsError, check_data_source, load

CHECKED_DIR = Path(paths.CHECKED_PARAMS)


STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    # stage: (notebook, params sections it is handed)
    "explore": ("01_explore", ("data", "explore")),
    "preprocess": ("02_preprocess", ("data", "split")),
    "train": ("03_train", ("train",)),
    "evaluate": ("04_evaluate", ("evaluate",)),
    "robustness": ("05_robustness", ("robustness",)),
}


def checked_path(section: str) -> Path:
    return CHECKED_DIR / f"{section}.json"


def check(params_path: str | Path = paths.PARAMS) -> None:
    """Validate the whole params file (and that dvc.lock is readable), then write each section's
    checked values."""
    check_lock()
    params = load(params_path)
    check_data_source(params.data.source)
    for section in SECTIONS:
        write_json(checked_path(section), getattr(params, section).model_dump(mode="json"))


LOCK_FILE = Path("dvc.lock")


def check_lock(path: Path = LOCK_FILE) -> None:
    """Refuse a dvc.lock that DVC cannot read: a `dvc repro` killed while DVC wrote it leaves it
    empty, and DVC then says only "validation failed". Raises ParamsError saying what to do."""
    from ferflow.pipeline.params import parse_yaml

    if not path.exists():
        return
    try:
        lock = parse_yaml(path.read_text(encoding="utf-8"))
        readable = isinstance(lock, dict) and isinstance(lock.get("stages"), dict)
    except Exception:  # noqa: BLE001 - any parse failure means the same to the user
        readable = False
    if not readable:
        raise ParamsError(
            f"{path} is empty or damaged (a killed `dvc repro` can leave it so): restore it with "
            f"`git checkout {path}`, or delete it to rerun every stage"
        )


def stage_parameters(stage: str) -> dict[str, dict]:
    """The checked sections a stage's notebook is handed, by name."""
    _, sections = STAGES[stage]
    missing = [str(checked_path(s)) for s in sections if not checked_path(s).is_file()]
    if missing:
        raise ParamsError(
            f"params: {missing} not found; run `python -m ferflow.pipeline.stage check` (or dvc repro) first"
        )
    return {section: read_json(checked_path(section)) for section in sections}


def quiet_kernel_manager() -> type:
    """A Jupyter kernel manager whose kernel process writes nothing to the terminal.

    The kernel's own stderr holds only its transport warnings and, when a run is stopped, its
    shutdown tracebacks: cell output (errors included) reaches the terminal and the executed
    notebook through Jupyter's messages, not through this stream.
    """
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw.setdefault("stderr", subprocess.DEVNULL)
            return await super().start_kernel(**kw)

    return QuietKernelManager


def run(stage: str, log_output: bool = True) -> None:
    """Execute a stage's notebook into reports/ with its params sections, then render it to HTML."""
    import logging

    import nbformat
    import papermill

    notebook, _ = STAGES[stage]
    for folder in OUTPUT_FOLDERS:  # what a killed earlier run left half-written
        remove_partial_files(folder)
    parameters = stage_parameters(stage)
    source = Path(paths.NOTEBOOKS) / f"{notebook}.ipynb"
    executed = Path(paths.REPORTS) / f"{notebook}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    # What cells print goes to the terminal as it comes (one line per training epoch); tables
    # and figures go to the report only, and papermill's own bookkeeping stays quiet.
    papermill_log = logging.getLogger("papermill")
    papermill_log.setLevel(logging.WARNING)
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=parameters,
            log_output=False,
            stdout_file=sys.stdout if log_output else None,
            stderr_file=sys.stderr if log_output else None,
            progress_bar=False,
            kernel_name="python3",
            kernel_manager_class=quiet_kernel_manager(),
        )
    finally:
        if executed.exists():
            ran = nbformat.read(executed, as_version=4)
            write_text(executed.with_suffix(".html"), report_html(ran, executed.name))
            write_text(code_report_path(executed), report_html(ran, executed.name, with_code=True))


# Where the stages write: the folders of their outputs (ferflow.paths).
OUTPUT_FOLDERS = (
    *(str(Path(p).parent) for p in (paths.PROCESSED_DATASET, paths.MODEL, paths.metrics("-"), paths.results("-"))),
    str(Path(paths.figure("-")).parent),
    paths.REPORTS,
)

# The lab template without the scripts it loads from a CDN (require.js, MathJax, Mermaid): the
# reports use none of them, and offline the browser only logs errors trying to fetch them.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def summary_first(notebook):
    """A copy of the notebook with its `summary`-tagged cells moved under the title cell.

    The summary needs the stage's results, so its cell runs last; the reader sees it first.
    """
    import copy

    ordered = copy.deepcopy(notebook)
    is_summary = ["summary" in cell.get("metadata", {}).get("tags", []) for cell in ordered.cells]
    summaries = [cell for cell, flag in zip(ordered.cells, is_summary) if flag]
    rest = [cell for cell, flag in zip(ordered.cells, is_summary) if not flag]
    ordered.cells = rest[:1] + summaries + rest[1:]
    return ordered


def code_report_path(executed: Path) -> Path:
    """reports/03_train.ipynb -> reports/03_train.code.html: the report with its code."""
    return executed.with_suffix(".code.html")


def report_html(notebook, notebook_name: str, with_code: bool = False) -> str:
    """A stage report: the executed notebook rendered without its code (or `with_code`), titled
    by its first heading, with links back to the index and to the other rendering."""
    import jinja2
    import nbconvert

    heading = next(
        (
            cell.source.splitlines()[0].lstrip("# ").strip()
            for cell in notebook.cells
            if cell.cell_type == "markdown" and cell.source.startswith("#")
        ),
        notebook_name,
    )
    exporter = nbconvert.HTMLExporter(
        exclude_input=not with_code,
        exclude_input_prompt=not with_code,
        exclude_output_prompt=not with_code,
        extra_loaders=[jinja2.DictLoader({"report.html.j2": OFFLINE_TEMPLATE})],
        template_file="report.html.j2",
    )
    body, _ = exporter.from_notebook_node(
        summary_first(notebook), resources={"metadata": {"name": f"{heading} · ferflow"}}
    )
    stem = Path(notebook_name).stem
    other = (
        (f"{stem}.html", "the report without code") if with_code else (f"{stem}.code.html", "the same, with its code")
    )
    nav = (
        f'<nav style="padding:0.5em 1em;font-family:sans-serif"><a href="index.html">&larr; all reports</a>'
        f' &middot; <a href="{html.escape(other[0])}">{other[1]}</a>'
        f' &middot; <a href="{html.escape(notebook_name)}" download>the executed notebook (.ipynb)</a></nav>'
    )
    return re.sub(r"(<body[^>]*>)", lambda match: match.group(1) + nav, body, count=1)


class StageStopped(Exception):
    """SIGTERM (or a gone parent) asked the stage to stop."""


def stop_children() -> None:
    """Kill this process's children (the notebook kernel) outright.

    Every output a stage writes is renamed into place whole, so nothing is left half-written;
    a kernel asked to terminate instead prints a traceback while it shuts down.
    """
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(children, timeout=5)


SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "busybox", "fish"})


def starting_processes() -> list:
    """This process's ancestors up to the one that started it: past any shells that ran the command.

    DVC runs a stage's command through `$SHELL -c`; some shells exec the command, others wait for
    it, so the stage's parent is either dvc itself or a shell that outlives a killed dvc.
    """
    import psutil

    chain = []
    process = psutil.Process().parent()
    while process is not None:
        chain.append(process)
        with contextlib.suppress(psutil.Error):
            if process.name() not in SHELLS:
                break
        process = process.parent()
    return chain


def still_running(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_with_parent(poll_seconds: float = 1.0) -> threading.Thread:
    """Stop this stage, and its kernel, when the process that started it (dvc) is gone.

    A killed `dvc` does not take its stage with it: without this, a training would run on and
    write its outputs behind DVC's back.
    """
    parent = os.getppid()
    starters = starting_processes()

    def watch() -> None:
        while os.getppid() == parent and all(still_running(process) for process in starters):
            time.sleep(poll_seconds)
        stop_children()
        os._exit(EXIT_STOPPED)

    watcher = threading.Thread(target=watch, name="parent-watch", daemon=True)
    watcher.start()
    return watcher


EXIT_STOPPED = 143  # 128 + SIGTERM, as a shell reports a terminated command


def _raise_stopped(signum, frame) -> None:
    raise StageStopped()


def main(argv: list[str] | None = None) -> int:
    stop_with_parent()
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        return _main(argv)
    except (KeyboardInterrupt, StageStopped) as stop:
        stop_children()
        stage = f"the {argv_stage(argv)} stage" if argv_stage(argv) else "the stage"
        how = "interrupted" if isinstance(stop, KeyboardInterrupt) else "stopped"
        print(
            f"{how}: {stage} did not finish; run `dvc repro` again to complete it (a training carries on "
            "from its last finished epoch)",
            file=sys.stderr,
        )
        return 130 if isinstance(stop, KeyboardInterrupt) else EXIT_STOPPED


def argv_stage(argv: list[str] | None) -> str | None:
    args = sys.argv[1:] if argv is None else argv
    return args[1] if len(args) > 1 and args[0] == "run" else None


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferflow.pipeline.stage", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser("check", help="validate params.yaml and write the checked sections")
    check_parser.add_argument("--params", default=paths.PARAMS)
    commands.add_parser("check-lock", help="say whether dvc.lock can be read, and what to do if not")
    run_parser = commands.add_parser("run", help="execute one stage's notebook")
    run_parser.add_argument("stage", choices=list(STAGES))
    run_parser.add_argument("--quiet", action="store_true", help="do not stream cell output")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            check(args.params)
        elif args.command == "check-lock":
            check_lock()
        else:
            run(args.stage, log_output=not args.quiet)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, StageStopped):
        raise
    except Exception as error:  # papermill's PapermillExecutionError and any other failure
        print(f"error: {short_reason(error, args)}", file=sys.stderr)
        return 1
    return 0


def short_reason(error: Exception, args: argparse.Namespace) -> str:
    """One line: what failed and why, then where the full traceback is."""
    name, value = type(error).__name__, str(error)
    if hasattr(error, "ename") and hasattr(error, "evalue"):  # a failed notebook cell
        name, value = error.ename, error.evalue
    where = ""
    if getattr(args, "stage", None):
        where = f" (the {args.stage} stage; full traceback in reports/{STAGES[args.stage][0]}.ipynb)"
    value = value.strip().splitlines()[0] if value.strip() else ""
    return f"{name}: {value}{where}"


if __name__ == "__main__":
    sys.exit(main())
