"""Dataset sources (downloads, archives, folders), their formats, and the prepared arrays."""
