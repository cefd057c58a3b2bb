"""`dvc plots diff` drawn into one HTML page that embeds Vega, so it draws offline and as a CI artifact."""

import tempfile
from pathlib import Path

from cifar.reporting.revisions import dvc

VEGA_DIR = Path(__file__).parent / "vendor" / "vega"


def plots_template():
    """DVC's page layout with Vega inlined instead of loaded from a CDN."""
    scripts = "\n".join(
        f"<script>{(VEGA_DIR / name).read_text()}</script>"
        for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
    )
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>DVC plots</title>\n'
        f"{scripts}\n<style>table {{ border-spacing: 15px; }}</style>\n</head>\n<body>\n{{plot_divs}}\n"
        "</body>\n</html>\n"
    )


def write_plots_html(base, out_dir):
    """`dvc plots diff [base]` into out_dir/index.html, with Vega inlined."""
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.html"
        template.write_text(plots_template())
        args = ["plots", "diff", *([base] if base else []), "-o", str(out_dir), "--html-template", str(template)]
        dvc(*args)
    return out_dir / "index.html"
