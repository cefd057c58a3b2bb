"""The networks, and the registry that says what each `train.model` name means."""
