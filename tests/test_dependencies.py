"""`make up` installs the project's dependencies, not the test extras: whatever the services
import must come with them (the tombstone's CloudEvents headers once needed the SDK that only
the tests installed, and `make up` on a new machine failed at the first import)."""

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# Code the tests alone import: shared/testing.py is their helpers' module.
TEST_ONLY = ("tests", "conftest.py", "testing.py")


def installed_by_make_up() -> set[str]:
    """The distributions the project's dependencies bring, their extras and own dependencies
    included, as pip would install them on this platform."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras_of: dict[str, set[str]] = {}
    todo = [Requirement(line) for line in project["dependencies"]]
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in extras_of and set(requirement.extras) <= extras_of[name]:
            continue
        extras = extras_of.setdefault(name, set())
        extras |= set(requirement.extras)
        for line in metadata.requires(name) or []:
            needed = Requirement(line)
            if needed.marker is None or any(
                needed.marker.evaluate({"extra": extra}) for extra in extras | {""}
            ):
                todo.append(needed)
    return set(extras_of)


def third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"shared", "services"}


def test_the_services_import_only_what_make_up_installs() -> None:
    installed = installed_by_make_up()
    distributions = metadata.packages_distributions()
    missing = []
    for path in sorted([*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]):
        if any(part in TEST_ONLY for part in path.relative_to(ROOT).parts):
            continue
        for module in sorted(third_party_imports(path)):
            names = {canonicalize_name(d) for d in distributions.get(module, [])}
            if not names & installed:
                missing.append(f"{path.relative_to(ROOT)}: {module} ({', '.join(names) or '?'})")
    assert not missing, "imported, but not installed by `make up`:\n" + "\n".join(missing)
