"""One self-contained HTML page of the pipeline's results: every plot and metric dvc.yaml declares.

    dvc.yaml ─► plot_specs ──► data plots (TSV/CSV/JSON) ─► chart_svg ──► inline <svg>
       │                   └─► image plots (files, folders) ────────────► <img src="data:...">
       └──────► metrics_files (each stage's `metrics:`) ─► flat_metrics ─► <table>
                                                         report_html ──► one .html file

`dvc plots show` renders the same plots with Vega, which its page fetches from a CDN; this
page needs no network and no DVC: Matplotlib draws each chart as SVG text inside the page,
images are embedded as base64, and the page has no script, no external style and no font
file. It reads dvc.yaml's plots (top-level, then each stage's) and metrics files (each
stage's, then top-level) as DVC does: a plot is an image path, a folder of images, a data file
(TSV, CSV, JSON or YAML; x defaults to the row number, y to the last column), or an id with `x`, `y` ({file: field or
[fields]}), `template`, `title`, `x_label`, `y_label`. Templates: linear, simple and smooth as
lines, scatter as points, bar_horizontal[_sorted] as bars, confusion[_normalized] as a heat
map of counts. A file that is not there yet, or cannot be read, is named in the page (and in
the summary) instead of failing the report; a dvc.yaml whose plots or metrics are not in DVC's
form stops the report with one error naming the entry.

The page is deterministic: the same files give the same bytes.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import save_text

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".svg": "image/svg+xml"}
DATA_SUFFIXES = (".tsv", ".csv", ".json", ".yaml", ".yml")
LINE_TEMPLATES = ("linear", "simple", "smooth")
BAR_TEMPLATES = ("bar_horizontal", "bar_horizontal_sorted")
CONFUSION_TEMPLATES = ("confusion", "confusion_normalized")
STEP = "step"                 # DVC's name for the row number, the x of a plot that names none
CHART_INCHES = (6.0, 3.4)
BAR_INCHES = 0.16             # height per bar of a bar chart


@dataclass
class PlotSpec:
    """One plot of dvc.yaml: images, or series [(file, field)] of a data chart."""
    title: str
    images: list[Path] = field(default_factory=list)        # image plot: files or folders
    series: list[tuple[Path, str]] = field(default_factory=list)
    x: dict[Path, str] = field(default_factory=dict)        # data plot: x field per file
    template: str = "linear"
    x_label: str | None = None
    y_label: str | None = None


@dataclass
class ReportSummary:
    charts: int = 0
    images: int = 0
    metrics_files: int = 0
    missing: list[str] = field(default_factory=list)        # files named in dvc.yaml, not found
    unreadable: list[str] = field(default_factory=list)     # "path: why", found but not read


def write_report(dvc_yaml, out, overwrite: bool = True) -> ReportSummary:
    """Read `dvc_yaml` and the files it names (relative to its folder); write the page to `out`
    (`overwrite=False`: refuse an existing `out`)."""
    dvc_yaml = Path(dvc_yaml)
    pipeline = load_pipeline(dvc_yaml)
    root = dvc_yaml.parent
    page, summary = report_html(plot_specs(declared_plots(pipeline), root),
                                metrics_files(pipeline, root), root, title=f"fcnlab report: {dvc_yaml}")
    save_text(out, page, overwrite=overwrite)
    return summary


def load_pipeline(dvc_yaml: Path) -> dict:
    if not dvc_yaml.is_file():
        raise FcnlabError(f"{dvc_yaml}: file not found; run in the project folder or pass --dvc-yaml")
    try:
        pipeline = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise FcnlabError(f"{dvc_yaml}: not UTF-8 text ({err})") from None
    except yaml.YAMLError as err:
        raise FcnlabError(f"{dvc_yaml}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(pipeline, dict):
        raise FcnlabError(f"{dvc_yaml}: not a DVC pipeline file (no stages or plots at its top level)")
    return pipeline


# --- What dvc.yaml declares ---------------------------------------------------------------------


def declared_plots(pipeline: dict) -> list:
    """The top-level `plots:` entries, then those of each stage (outputs marked as plots)."""
    plots = _list_of(pipeline.get("plots"), "plots")
    for stage, body in _stages(pipeline).items():
        plots += _list_of(body.get("plots"), f"stages: {stage}: plots")
    return plots


def _stages(pipeline: dict) -> dict:
    stages = pipeline.get("stages") or {}
    if not isinstance(stages, dict):
        raise ValueError(f"stages: must be a mapping of stage names, got {_shown(stages)}")
    bodies = {str(name): body or {} for name, body in stages.items()}
    for name, body in bodies.items():
        if not isinstance(body, dict):
            raise ValueError(f"stages: {name}: must be a mapping (cmd, deps, outs, ...), got {_shown(body)}")
    return bodies


def _list_of(value, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where}: must be a list, got {_shown(value)}")
    return list(value)


def _shown(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _text(value, where: str) -> str | None:
    """A title or label: text, or a number written as text; None stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{where}: must be text, got {_shown(value)}")


def plot_specs(plots: list, root: Path) -> list[PlotSpec]:
    """DVC's top-level `plots:` list as PlotSpecs, paths resolved against `root`."""
    specs = []
    for item in plots:
        if isinstance(item, str):
            name, props = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            ((name, props),) = item.items()
        else:
            raise ValueError(f"plots: each entry must be a path or a one-key mapping, got {_shown(item)}")
        if not isinstance(props or {}, dict):
            raise ValueError(f"plots: {name}: its definition must be a mapping, got {_shown(props)}")
        specs.append(_plot_spec(str(name), props or {}, root))
    return specs


def _plot_spec(name: str, props: dict, root: Path) -> PlotSpec:
    where = f"plots: {name}"
    labels = {"template": _text(props.get("template", "linear"), f"{where}: template"),
              "x_label": _text(props.get("x_label"), f"{where}: x_label"),
              "y_label": _text(props.get("y_label"), f"{where}: y_label")}
    title = _text(props.get("title", name), f"{where}: title")
    y = props.get("y")
    if isinstance(y, dict):                        # an id with {file: field or [fields]}
        series = [(root / str(file), _field(f, where)) for file, fields in y.items() for f in _as_list(fields)]
        files = list(dict.fromkeys(path for path, _ in series))
        return PlotSpec(title, series=series, x=_x_fields(props.get("x"), files, root, where), **labels)
    path = root / name                             # the id is a path: an image, folder or data file
    if path.is_dir() or path.suffix.lower() not in DATA_SUFFIXES:
        return PlotSpec(title, images=[path])
    series = [(path, _field(f, where)) for f in _as_list(y)] if y is not None else [(path, "")]   # "": last column
    return PlotSpec(title, series=series, x=_x_fields(props.get("x"), [path], root, where), **labels)


def _x_fields(x, files: list[Path], root: Path, where: str) -> dict[Path, str]:
    if isinstance(x, dict):
        return {root / str(file): _field(name, where) for file, name in x.items()}
    return {file: _field(x, where) or STEP for file in files}


def _field(value, where: str) -> str:
    """A column name: text (a number is taken as its text, as YAML reads `x: 1`)."""
    return _text(value, f"{where}: a field name") or ""


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def metrics_files(pipeline: dict, root: Path) -> list[tuple[str, Path]]:
    """(stage, path) of every `metrics:` entry: each stage's, then the top-level list's."""
    found = []
    for stage, body in _stages(pipeline).items():
        found += [(stage, root / path) for path in _entry_paths(body.get("metrics"), f"stages: {stage}: metrics")]
    found += [("", root / path) for path in _entry_paths(pipeline.get("metrics"), "metrics")]
    return list(dict.fromkeys(found))


def _entry_paths(entries, where: str) -> list[str]:
    """DVC output lists hold paths or {path: options} mappings."""
    paths = []
    for entry in _list_of(entries, where):
        if isinstance(entry, dict) and len(entry) == 1:
            entry = next(iter(entry))
        if not isinstance(entry, str):
            raise ValueError(f"{where}: each entry must be a path or a {{path: options}} mapping, "
                             f"got {_shown(entry)}")
        paths.append(entry)
    return paths


# --- Reading the files --------------------------------------------------------------------------


def read_table(path: Path) -> list[dict]:
    """Rows of a TSV, CSV, JSON or YAML data file ({column: value}); numbers become floats.
    A file that is not such a table raises ValueError saying why."""
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix in (".json", ".yaml", ".yml"):
        try:
            rows = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"not valid YAML ({' '.join(str(err).split())})") from None
        if isinstance(rows, dict):                 # DVC also takes {"key": [rows]}
            lists = [value for value in rows.values() if isinstance(value, list)]
            if len(lists) != 1:
                raise ValueError("a JSON or YAML plot file must be a list of rows, or hold exactly one")
            rows = lists[0]
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        try:
            rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
        except csv.Error as err:                   # e.g. a field longer than the csv module reads
            raise ValueError(f"not a readable {suffix[1:].upper()} table ({err})") from None
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise ValueError("no rows of named columns")
    return [{str(key): _number_or_text(value) for key, value in row.items()} for row in rows]


def _number_or_text(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def flat_metrics(value, prefix: str = "") -> list[tuple[str, object]]:
    """Nested metrics as (dotted.key, value) rows; lists of numbers stay one value."""
    if isinstance(value, dict):
        rows = []
        for key, inner in value.items():
            rows += flat_metrics(inner, f"{prefix}.{key}" if prefix else str(key))
        return rows
    return [(prefix, value)]


def read_metrics(path: Path):
    if path.suffix.lower() in (".yaml", ".yml"):
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    return json.loads(path.read_text(encoding="utf-8"))


# --- Charts -------------------------------------------------------------------------------------


def chart_svg(spec: PlotSpec, tables: dict[Path, list[dict]], chart_id: str) -> str:
    """The plot drawn by Matplotlib as an <svg> element ready to inline in HTML."""
    from matplotlib.figure import Figure

    width, height = CHART_INCHES
    if spec.template in BAR_TEMPLATES:                 # room for one readable label per bar
        height = max(height, BAR_INCHES * _row_count(spec, tables) + 1.0)
    figure = Figure(figsize=(width, height))
    axes = figure.subplots()
    if spec.template in BAR_TEMPLATES:
        _draw_bars(axes, spec, tables)
    elif spec.template in CONFUSION_TEMPLATES:
        _draw_confusion(figure, axes, spec, tables)
    else:
        _draw_lines_or_points(axes, spec, tables)
    figure.tight_layout()                          # the title is the section's heading
    return _inline_svg(figure, chart_id)


def _row_count(spec: PlotSpec, tables) -> int:
    return max(len(tables[path]) for path, _ in spec.series)


def _series_values(spec: PlotSpec, tables, path: Path, name: str):
    rows = tables[path]
    name = name or list(rows[0])[-1]               # DVC's default y: the last column
    x_name = spec.x.get(path, STEP)
    for column in {name, x_name} - {STEP}:
        if column not in rows[0]:
            raise ValueError(f"{path.name} has no column {column!r} (it has {', '.join(rows[0])})")
    xs = list(range(len(rows))) if x_name == STEP and STEP not in rows[0] else [row[x_name] for row in rows]
    return name, x_name, xs, [row[name] for row in rows]


def _series_label(spec: PlotSpec, path: Path, name: str) -> str:
    files = list(dict.fromkeys(p for p, _ in spec.series))
    if len(files) == 1:
        return name
    common = len(_common_parts(files))
    return f"{'/'.join(path.parts[common:])}: {name}"


def _common_parts(paths: list[Path]) -> tuple:
    parts = [p.parent.parts for p in paths]
    common = []
    for level in zip(*parts):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    return tuple(common)


def _draw_lines_or_points(axes, spec: PlotSpec, tables) -> None:
    from matplotlib.ticker import MaxNLocator

    names = []
    for path, name in spec.series:
        name, x_name, xs, ys = _series_values(spec, tables, path, name)
        label = _series_label(spec, path, name)
        if spec.template == "scatter":
            axes.scatter(xs, ys, s=8, alpha=0.7, label=label)
        else:
            axes.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=label)
        names.append(name)
    axes.set_xlabel(spec.x_label or x_name)
    axes.set_ylabel(spec.y_label or ", ".join(dict.fromkeys(names)))
    if all(isinstance(x, (int, float)) and float(x).is_integer() for x in xs):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))     # steps, epochs: no 0.5
    if len(spec.series) > 1:
        axes.legend(fontsize=8)
    axes.grid(alpha=0.3)


def _draw_bars(axes, spec: PlotSpec, tables) -> None:
    """DVC's bar_horizontal: the y field names the bars, the x field is their length."""
    (path, name), = spec.series[:1]
    name, x_name, lengths, bars = _series_values(spec, tables, path, name)
    pairs = list(zip(bars, lengths))
    if spec.template == "bar_horizontal_sorted":
        pairs.sort(key=lambda pair: pair[1])
    positions = range(len(pairs))
    axes.barh(positions, [length for _, length in pairs], color="#4c72b0")
    axes.set_yticks(positions, [_short(bar) for bar, _ in pairs], fontsize=7 if len(pairs) > 20 else 9)
    axes.set_xlabel(spec.x_label or x_name)
    axes.set_ylabel(spec.y_label or name)
    axes.grid(axis="x", alpha=0.3)


def _draw_confusion(figure, axes, spec: PlotSpec, tables) -> None:
    (path, name), = spec.series[:1]
    name, x_name, actual, predicted = _series_values(spec, tables, path, name)
    classes = sorted(set(actual) | set(predicted), key=str)
    counts = [[0] * len(classes) for _ in classes]              # rows: predicted (y), columns: x
    for a, p in zip(actual, predicted):
        counts[classes.index(p)][classes.index(a)] += 1
    if spec.template == "confusion_normalized":
        counts = [[c / max(sum(column), 1) for c, column in zip(row, zip(*counts))] for row in counts]
    image = axes.imshow(counts, cmap="Blues")
    axes.set_xticks(range(len(classes)), [_short(c) for c in classes])
    axes.set_yticks(range(len(classes)), [_short(c) for c in classes])
    axes.set_xlabel(spec.x_label or x_name)
    axes.set_ylabel(spec.y_label or name)
    figure.colorbar(image, ax=axes)


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _inline_svg(figure, chart_id: str) -> str:
    """The figure as an <svg> element: no XML prolog, no namespace URLs, ids made unique."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart_id}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                                       "Type": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r' xmlns(:\w+)?="[^"]*"', "", svg, count=0)   # HTML knows the SVG namespaces
    for old in sorted(set(re.findall(r' id="([^"]+)"', svg)), key=len, reverse=True):
        new = f"{chart_id}-{old}"
        svg = (svg.replace(f' id="{old}"', f' id="{new}"').replace(f'"#{old}"', f'"#{new}"')
                  .replace(f"url(#{old})", f"url(#{new})"))
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(chart_id)}" ', 1)


# --- The page -----------------------------------------------------------------------------------


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1240px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 0.5em 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1em 2em; }
.metrics { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
section.images { grid-column: 1 / -1; }
svg { max-width: 100%; height: auto; } img { max-width: 100%; image-rendering: auto; }
figure { margin: 0.5em 0; } figcaption { font-size: 0.85em; color: #555; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; } td.number { text-align: right; }
.missing { color: #a40000; } code { font-size: 0.95em; }
"""


def report_html(specs: list[PlotSpec], metrics: list[tuple[str, Path]], root: Path,
                title: str = "fcnlab report") -> tuple[str, ReportSummary]:
    """The whole page, and what went into it."""
    summary = ReportSummary()
    plots = [_plot_section(spec, number, root, summary) for number, spec in enumerate(specs, start=1)]
    tables = [_metrics_section(stage, path, root, summary) for stage, path in metrics]
    summary.missing = list(dict.fromkeys(summary.missing))       # a file two plots share: once
    missing = "".join(f"<li><code>{html.escape(item)}</code></li>"
                      for item in summary.missing + summary.unreadable)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{summary.charts} charts, {summary.images} images, {summary.metrics_files} metrics files"
        f"{f', {len(summary.missing) + len(summary.unreadable)} missing or unreadable' if missing else ''}."
        " Everything is embedded in this file.</p>",
        f'<ul class="missing" id="missing">{missing}</ul>' if missing else "",
        '<h2>Plots</h2><div class="grid">', *plots, "</div>",
        '<h2>Metrics</h2><div class="metrics">', *tables, "</div>", "</body>", "</html>"]
    return "\n".join(part for part in parts if part) + "\n", summary


def _plot_section(spec: PlotSpec, number: int, root: Path, summary: ReportSummary) -> str:
    body = _images_html(spec, root, summary) if spec.images else _chart_html(spec, number, root, summary)
    kind = "images" if spec.images else "chart"
    return f'<section class="{kind}" id="plot-{number}"><h3>{html.escape(spec.title)}</h3>{body}</section>'


def _chart_html(spec: PlotSpec, number: int, root: Path, summary: ReportSummary) -> str:
    tables, problems = {}, []
    for path in dict.fromkeys(path for path, _ in spec.series):
        if not path.is_file():
            summary.missing.append(_relative(path, root))
            problems.append(f"missing: {_relative(path, root)}")
            continue
        try:
            tables[path] = read_table(path)
        except (ValueError, OSError, RecursionError) as err:          # UnicodeDecodeError is a ValueError
            summary.unreadable.append(f"{_relative(path, root)}: {err}")
            problems.append(f"unreadable: {_relative(path, root)} ({err})")
    if problems:
        return "".join(f'<p class="missing">{html.escape(p)}</p>' for p in problems)
    try:
        svg = chart_svg(spec, tables, f"chart{number}")
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as err:   # Matplotlib's, on odd data
        summary.unreadable.append(f"{spec.title}: {err}")
        return f'<p class="missing">cannot draw: {html.escape(str(err))}</p>'
    summary.charts += 1
    return f"<figure>{svg}</figure>"


def _images_html(spec: PlotSpec, root: Path, summary: ReportSummary) -> str:
    parts = []
    for path in spec.images:
        files = ([path] if not path.is_dir() else
                 sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_TYPES))
        if not path.exists() or (path.is_dir() and not files):
            summary.missing.append(_relative(path, root))
            parts.append(f'<p class="missing">missing: {html.escape(_relative(path, root))}</p>')
            continue
        for file in files:
            problem = None
            if file.suffix.lower() not in IMAGE_TYPES:
                problem = (f"not an image ({', '.join(IMAGE_TYPES)}) or a data file "
                           f"({', '.join(DATA_SUFFIXES)})")
            else:
                try:
                    data = base64.b64encode(file.read_bytes()).decode("ascii")
                except OSError as err:
                    problem = str(err)
            if problem is not None:
                summary.unreadable.append(f"{_relative(file, root)}: {problem}")
                parts.append(f'<p class="missing">unreadable: {html.escape(_relative(file, root))} '
                             f'({html.escape(problem)})</p>')
                continue
            name = html.escape(_relative(file, root))
            parts.append(f'<figure><img alt="{name}" src="data:{IMAGE_TYPES[file.suffix.lower()]};base64,'
                         f'{data}"><figcaption>{name}</figcaption></figure>')
            summary.images += 1
    return "".join(parts)


def _metrics_section(stage: str, path: Path, root: Path, summary: ReportSummary) -> str:
    name = _relative(path, root)
    heading = f"<h3>{html.escape(stage + ': ' if stage else '')}<code>{html.escape(name)}</code></h3>"
    if not path.is_file():
        summary.missing.append(name)
        return f'<section>{heading}<p class="missing">missing: {html.escape(name)}</p></section>'
    try:
        rows = flat_metrics(read_metrics(path))
    except (ValueError, OSError, yaml.YAMLError, RecursionError) as err:   # UnicodeDecodeError is a ValueError
        summary.unreadable.append(f"{name}: {err}")
        return f'<section>{heading}<p class="missing">unreadable: {html.escape(str(err))}</p></section>'
    summary.metrics_files += 1
    cells = "".join(f"<tr><td>{html.escape(key)}</td>{_value_cell(value)}</tr>" for key, value in rows)
    return f"<section>{heading}<table><tr><th>metric</th><th>value</th></tr>{cells}</table></section>"


def _value_cell(value) -> str:
    if isinstance(value, float):
        return f'<td class="number">{value:.6g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="number">{value}</td>'
    # YAML also reads dates and times: shown as text (json.dumps knows no dates).
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"<td>{html.escape(text)}</td>"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
