"""Entry points: one module per DVC stage (fetch, preprocess, train, evaluate, robustness, export,
visualize), and the predict and report commands. Each is `python -m stages.<name>`; the logic lives
in the `cifar` package."""
