"""What every stage uses: params, artifact paths, atomic writes, errors, the command line."""
