"""The networks and their recipes' rules, our layers, and loading a trained model: no training code
(cifar/zoo joins a network with its training)."""
