"""Which project files a module runs: its own file, and every project module it imports, transitively.

Read from the source (every import statement, also those inside functions), so it
needs no import of its own and over-approximates what one run executes: the safe
side for a cache key or a DVC dependency list. Third-party modules are left out.
"""

import ast
import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def module_file(name, root=PROJECT_ROOT):
    """The file of project module `name` ('stages.train' -> stages/train.py), or None if it is not ours."""
    path = Path(root, *name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def imported_names(path, package):
    """Absolute names of the modules (and of names within them) that a file imports, anywhere in it."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*parents, base]))
            yield base
            # `from package import name` imports a submodule when `name` is one
            yield from (f"{base}.{alias.name}" for alias in node.names)


def discovers_its_modules(path):
    """Whether a package's __init__ imports each of its modules by listing them (`pkgutil.iter_modules(__path__)`),
    as cifar/models does: then importing the package runs every module in it."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    return any(
        isinstance(node, ast.Call) and ast.unparse(node.func) == "pkgutil.iter_modules"
        and any(ast.unparse(arg) == "__path__" for arg in node.args)
        for node in ast.walk(tree)
    )  # fmt: skip


def package_modules(name, path):
    return [f"{name}.{module.stem}" for module in sorted(path.parent.glob("*.py")) if module.name != "__init__.py"]


def files_run_by(module, root=PROJECT_ROOT):
    """Sorted project files that running `module` may execute (package __init__ files included)."""
    root = Path(root)
    todo, seen, files = [module], set(), set()
    while todo:
        parts = todo.pop().split(".")
        # importing a.b.c runs a/__init__.py, then a/b/__init__.py, then a/b/c.py
        for length in range(1, len(parts) + 1):
            name = ".".join(parts[:length])
            if name in seen:
                continue
            seen.add(name)
            path = module_file(name, root)
            if path is None:
                continue
            files.add(path)
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            todo.extend(imported_names(path, package))
            if path.name == "__init__.py" and discovers_its_modules(path):
                todo.extend(package_modules(name, path))
    return sorted(files)


def update_dvc_yaml(path):
    """Rewrite, in place, the code dependencies of every `python -m stages.<name>` stage of a dvc.yaml.

    Text-level, so comments and layout stay: each stage's `- cifar/...py` / `- stages/...py` deps
    are replaced, where the first of them stood, by what the stage's command runs; a stage listing
    none yet (a new one) gets them at the end of its deps.
    """
    lines = Path(path).read_text().splitlines(keepends=True)
    out, module, in_deps, written, indent = [], None, False, True, ""
    code_dep = re.compile(r"^(\s+)- (?:cifar|stages)/\S+\.py\s*$")

    def code_deps():
        return [f"{indent}- {file.relative_to(PROJECT_ROOT).as_posix()}\n" for file in files_run_by(module)]

    for line in lines:
        item = re.match(r"^(\s*)- ", line)
        if in_deps and not item and line.strip() and not line.lstrip().startswith("#"):
            in_deps = False  # the end of a deps list: a new stage gets its code deps here
            if not written:
                out += code_deps()
                written = True
        command = re.match(r"^\s+cmd: python -m (stages\.\w+)\s*$", line)
        if command:
            module, written = command[1], False
        if module and re.match(r"^\s+deps:\s*$", line):
            in_deps = True
        if in_deps and item:
            indent = item[1]
        if code_dep.match(line) and module:
            if not written:
                out += code_deps()
                written = True
            continue
        out.append(line)
    if in_deps and not written:
        out += code_deps()
    Path(path).write_text("".join(out))


if __name__ == "__main__":
    # python -m cifar.core.codegraph stages.train: the code deps dvc.yaml must list for it;
    # python -m cifar.core.codegraph --update dvc.yaml: rewrite them all in place.
    import sys

    if sys.argv[1] == "--update":
        update_dvc_yaml(sys.argv[2])
    else:
        for path in files_run_by(sys.argv[1]):
            print(f"      - {path.relative_to(PROJECT_ROOT).as_posix()}")
