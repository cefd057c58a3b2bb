"""Loss and accuracy per epoch of a run and of its base."""

from cifar.figures import plt


def curves_figure(current, base, base_name):
    """Loss and accuracy per epoch, train and test; the base run dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split, colour in (("train", "tab:blue"), ("test", "tab:orange")):
            key = f"{split}/{metric}.tsv"
            if current.get(key):
                ax.plot(range(1, len(current[key]) + 1), current[key], color=colour, label=f"{split} (this run)")
            if base.get(key):
                ax.plot(
                    range(1, len(base[key]) + 1),
                    base[key],
                    color=colour,
                    linestyle="--",
                    label=f"{split} ({base_name})",
                )
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
