"""One boundary with bacpypes3: gateway/bacnet/stack is the one place that knows how bacpypes3 works
inside. The rest of gateway/bacnet uses bacpypes3 only for its data types, PDUs, errors and
objects, reads no private member of another object, and needs no `# type: ignore`.

The import contracts of pyproject.toml hold the rest of the line (the stack imports nothing of the
face; the face uses the stack through its surface): tests/test_style.py runs them."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BACNET = ROOT / "gateway" / "bacnet"
STACK = BACNET / "stack"
#: bacpypes3's applications, network and link layers, services and internals: the stack's alone.
MACHINERY = (
    "bacpypes3.app",
    "bacpypes3.appservice",
    "bacpypes3.comm",
    "bacpypes3.ipv4",
    "bacpypes3.local.cov",
    "bacpypes3.local.object",
    "bacpypes3.netservice",
    "bacpypes3.npdu",
    "bacpypes3.service",
    "bacpypes3.vlan",
)


def outside_the_stack() -> Iterator[tuple[str, str]]:
    """(path, text) of every module of gateway/bacnet but the stack's."""
    for path in sorted(BACNET.rglob("*.py")):
        if STACK not in path.parents:
            yield str(path.relative_to(ROOT)), path.read_text()


def machinery_imported(text: str) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return sorted({name for name in modules if any(name == m or name.startswith(f"{m}.") for m in MACHINERY)})


def private_reads(text: str) -> list[str]:
    """`x._name` on anything but self, cls or super()."""
    reads = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            own = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            inherited = isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super"
            if not own and not inherited:
                reads.append(f"{node.lineno}: {ast.unparse(node)}")
    return reads


def type_ignores(text: str) -> list[int]:
    return [number for number, line in enumerate(text.splitlines(), start=1) if "# type: ignore" in line]


def test_outside_the_stack_bacpypes3_is_its_data_types_pdus_errors_and_objects() -> None:
    assert {path: found for path, text in outside_the_stack() if (found := machinery_imported(text))} == {}


def test_outside_the_stack_no_private_member_of_another_object_is_read() -> None:
    """What bacpypes3 keeps private is reached through the stack's surface."""
    assert {path: found for path, text in outside_the_stack() if (found := private_reads(text))} == {}


def test_outside_the_stack_nothing_needs_a_type_ignore() -> None:
    assert {path: found for path, text in outside_the_stack() if (found := type_ignores(text))} == {}


def test_the_checks_find_what_they_look_for() -> None:
    """Each check finds its case in a module made to break it, so none passes by seeing nothing."""
    broken = (
        "import bacpypes3.ipv4\n"
        "from bacpypes3.app import Application\n"
        "from bacpypes3.primitivedata import Unsigned\n"
        "detections = app._cov_detections  # type: ignore[attr-defined]\n"
        "mine = self._mine, super()._write\n"
    )
    assert machinery_imported(broken) == ["bacpypes3.app", "bacpypes3.app.Application", "bacpypes3.ipv4"]
    assert private_reads(broken) == ["4: app._cov_detections"]
    assert type_ignores(broken) == [4]
    assert len(list(outside_the_stack())) > 20  # the modules of the face are found
