"""Stage scripts of the CIFAR-10 pipeline; each module with a main() is one DVC stage."""
