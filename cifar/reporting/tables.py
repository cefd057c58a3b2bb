"""Markdown tables of the report. Every table of metrics shows this run, the base and the change."""

HEADLINE = ["accuracy", "loss", "ece", "nll", "macro.precision", "macro.recall", "macro.f1-score"]
EXPORT_FORMATS = ("keras", "saved_model", "tflite_float32", "tflite_int8")


def flatten(data, prefix=""):
    """{'a': {'b': 1}} -> {'a.b': 1}: the keys `dvc metrics diff` shows."""
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


def compared(columns, current, base):
    """Cells 'this run | base | change' for each flattened key in `columns`."""
    base = base or {}
    return " | ".join(
        f"{fmt(current.get(k))} | {fmt(base.get(k))} | {change(base.get(k), current.get(k))}" for k in columns
    )


def table(first, names, rows):
    """A Markdown table whose metric columns each come as this run, base, change."""
    header = f"| {first} | " + " | ".join(f"{name} | base | change" for name in names) + " |"
    rule = "|---|" + "---:|---:|---:|" * len(names)
    return "\n".join([header, rule, *rows])


def metrics_table(current, base):
    rows = [f"| {name} | {compared([name], current, base)} |" for name in HEADLINE]
    return table("metric", ["this run"], rows)


def per_class_table(current, base):
    classes = [key.split(".")[1] for key in current if key.startswith("per_class.") and key.endswith(".recall")]
    rows = [
        f"| {name} | {compared([f'per_class.{name}.recall', f'per_class.{name}.f1-score'], current, base)} |"
        for name in classes
    ]
    return table("class", ["recall", "F1"], rows)


def stimuli_table(current, base):
    """Per conv layer: its filters, how many are dead, and their mean final activation."""
    layers = [key.split(".")[1] for key in current if key.startswith("layers.") and key.endswith(".filters")]
    rows = [
        f"| {name} ({current[f'layers.{name}.filters']} filters) | "
        f"{compared([f'layers.{name}.dead', f'layers.{name}.mean_activation'], current, base)} |"
        for name in layers
    ]
    return table("layer", ["dead filters", "mean activation"], rows)


def robustness_table(current, base):
    """Each corruption's mean accuracy over the severities, and the mean of all of them."""
    rows = [f"| no corruption | {compared(['clean_accuracy'], current, base)} |"]
    rows += [
        f"| {key.split('.')[1].replace('_', ' ')} | {compared([key], current, base)} |"
        for key in current
        if key.startswith("corruptions.") and key.endswith(".mean")
    ]
    rows.append(f"| **mean of all, every severity** | {compared(['mean_corruption_accuracy'], current, base)} |")
    published = {  # the published CIFAR-10-C's: the papers' and RobustBench's mean, and the rest's
        "mean_benchmark_corruption_accuracy": "**mean of the 15 benchmark corruptions (the papers', RobustBench's)**",
        "mean_extra_corruption_accuracy": "**mean of the 4 extra corruptions**",
    }
    rows += [
        f"| {label} | {compared([key], current, base)} |"
        for key, label in published.items()
        if key in current or key in (base or {})
    ]
    return table("corruption", ["accuracy"], rows)


def export_table(current, base):
    keys = ("accuracy", "agreement_with_keras", "size_mb", "latency_ms")
    rows = [
        f"| {name} | {compared([f'{name}.{key}' for key in keys], current, base)} |"
        for name in EXPORT_FORMATS
        if f"{name}.accuracy" in current
    ]
    return table("format", ["test accuracy", "agrees with Keras", "size (MB)", "latency (ms, 1 image)"], rows)


def params_table(diff):
    changed = diff.get("params.yaml", {})
    if not changed:
        return "No params differ from the base."
    rows = ["| param | base | this run |", "|---|---|---|"]
    rows += [f"| {key} | {fmt(v.get('old'))} | {fmt(v.get('new'))} |" for key, v in sorted(changed.items())]
    return "\n".join(rows)
