"""The shape of the code (README, "Layout"): no import cycle, `scheduling/` never
imports `config/`, and no function-level import of the project's own modules
outside the places Django and gunicorn need one."""

from __future__ import annotations

from tests.support.imports import cycles, graph, package_edges

# AppConfig.ready() imports what connects receivers (the app registry is ready
# only then); gunicorn's config module keeps the master from importing the app.
FUNCTION_LEVEL_ALLOWED = {"scheduling.apps", "viral_clips.apps", "config.gunicorn"}


def test_no_module_imports_itself_in_a_circle():
    # Imports inside functions count too: they are how a circle is usually hidden.
    edges, inner = graph()
    for module, target, _ in inner:
        edges[module].add(target)
    assert cycles(edges) == []


def test_the_scheduling_package_never_imports_config():
    edges, _ = graph()
    assert ("scheduling", "config") not in package_edges(edges)
    assert package_edges(edges) <= {
        ("config", "scheduling"),
        ("config", "viral_clips"),  # urls.py routes to the app's views
        ("viral_clips", "scheduling"),
    }


def test_no_function_level_import_hides_a_dependency():
    _, inner = graph()
    assert [(m, t, line) for m, t, line in inner if m not in FUNCTION_LEVEL_ALLOWED] == []


def test_the_checker_sees_a_cycle_and_a_function_level_import():
    # The checks above must be able to fail.
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    _, inner = graph()
    assert ("scheduling.apps", "scheduling.signals") in {(m, t) for m, t, _ in inner}


def test_the_readme_shows_the_graph_as_it_is():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("Imports between the packages", 1)[1].split("```", 2)[1]
    shown = set(re.findall(r"^(\w+) -> (\w+)", block, re.M))
    edges, _ = graph()
    assert shown == package_edges(edges)
    assert "cycles: none" in block
