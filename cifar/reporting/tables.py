"""Markdown tables of the report: metrics with the base's values and the change, per-class figures, params."""

HEADLINE = ["accuracy", "loss", "macro.precision", "macro.recall", "macro.f1-score"]


def flatten(data, prefix=""):
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def change(old, new):
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return f"{new - old:+.4f}"
    return ""


def metrics_table(current, base):
    rows = ["| metric | this run | base | change |", "|---|---:|---:|---:|"]
    for name in HEADLINE:
        new, old = current.get(name), (base or {}).get(name)
        rows.append(f"| {name} | {fmt(new)} | {fmt(old)} | {change(old, new)} |")
    return "\n".join(rows)


def per_class_table(current):
    classes = sorted(
        {key.split(".")[1] for key in current if key.startswith("per_class.")},
        key=lambda c: list(current).index(f"per_class.{c}.precision"),
    )
    rows = ["| class | precision | recall | F1 |", "|---|---:|---:|---:|"]
    for name in classes:
        rows.append(
            f"| {name} | "
            + " | ".join(fmt(current[f"per_class.{name}.{k}"]) for k in ("precision", "recall", "f1-score"))
            + " |"
        )
    return "\n".join(rows)


def params_table(diff):
    changed = diff.get("params.yaml", {})
    if not changed:
        return "No params differ from the base."
    rows = ["| param | base | this run |", "|---|---|---|"]
    rows += [f"| {key} | {fmt(v.get('old'))} | {fmt(v.get('new'))} |" for key, v in sorted(changed.items())]
    return "\n".join(rows)
