"""One-off studies: each answered a question once (what bfloat16 costs on a CPU without its units,
what each of airbench94's additions brings) and is kept runnable, not run by `make benchmark`."""
