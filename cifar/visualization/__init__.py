"""Maximum stimuli of conv filters and class scores."""
