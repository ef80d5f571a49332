"""The report's one static HTML page: run facts, headline metrics, each figure with how to read it."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from .figures import Figure
from ..model.registry import METHODS


def render_html(summary: dict[str, Any], config: dict[str, Any], figures: list[Figure],
                class_names: list[str]) -> str:
    """One static page: run facts, headline metrics, then each figure (relative <img>) with how to read it."""
    e = html.escape
    metrics = summary["metrics"]
    headline = "".join(f"<tr><th>{e(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics.items())
    cfg = config.get("config", {})
    facts = {
        "method": summary["method"], "checkpoint": f"{summary['checkpoint']} (epoch {summary['epoch']})",
        "features": ", ".join(summary["features"]), "split": summary["split"], "video": summary["video"],
        "classes": len(class_names), "parameters": config.get("parameters", "?"),
        "options": ", ".join(f"{k}={cfg[k]}" for k in ("use_tci", "use_vci", "sta_layers", "use_patches",
                                                         "bias_estimator", "bias_source", "frontdoor_cross")
                             if k in cfg and _reads(summary["method"], k)) or "-",
        "code version": summary["code_version"],
    }
    fact_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts.items())
    sections = []
    for figure in figures:
        parts = [f'<section id="{e(figure.key)}"><h2>{e(figure.title)}</h2>']
        if figure.file:
            parts.append(f'<img src="{e(figure.file)}" alt="{e(figure.title)}">')
        if figure.caption and figure.file:
            parts.append(f"<p>{e(figure.caption)}</p>")
        if figure.text:
            parts.append(f"<pre>{e(figure.text)}</pre>")
        parts += [f'<p class="note">{e(note)}</p>' for note in figure.notes]
        parts.append("</section>")
        sections.append("\n".join(parts))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cmdcl report: {e(Path(summary['run']).name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1450px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ text-align: left; padding: 2px 12px 2px 0; vertical-align: top; font-size: 14px; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
.note {{ color: #8a4b00; }}
section {{ margin-top: 2em; }}
</style></head><body>
<h1>cmdcl report: {e(str(summary['run']))}</h1>
<table>{fact_rows}</table>
<h2>Metrics on split {e(summary['split'])}</h2>
<table>{headline}</table>
{chr(10).join(sections)}
<p>Numbers behind the figures: <a href="report.json">report.json</a>.</p>
</body></html>
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))


def _reads(method: str, option: str) -> bool:
    """Whether the run's head reads `option` (a run of a head no longer in the table shows none)."""
    return method in METHODS and option in METHODS[method].options
