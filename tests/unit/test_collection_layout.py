"""The repository is the collection sessionshift.migration: its plugins are called by FQCN everywhere.

A module left in library/ or a task that calls `session_phase:` by its bare name would still run
from some checkouts (ansible.cfg once pointed at library/) but not from the installed collection.
"""

from __future__ import annotations

import glob
import os
import re

import pytest
import yaml

from tests.conftest import ROOT, load_module

COLLECTION = "sessionshift.migration"
MODULES = sorted(os.path.basename(path)[:-3]
                 for path in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
FILTER_FILES = glob.glob(os.path.join(ROOT, "plugins", "filter", "*.py"))


def _filter_names() -> list[str]:
    names = []
    for path in FILTER_FILES:
        with open(path, encoding="utf-8") as handle:
            names += re.findall(r'"([a-z_]+)":\s*[a-z_]+[,}]', handle.read())
    return sorted(set(names))


def _yaml_files() -> list[str]:
    files = []
    for top in ("playbooks", "roles", "molecule", "bench", "examples"):
        for extension in ("yml", "yaml"):
            files += glob.glob(os.path.join(ROOT, top, "**", f"*.{extension}"), recursive=True)
    return sorted(files)


def _bare_calls(node, found: list[str]) -> None:
    """Keys of task-like mappings (items of a list) that name a collection module without its FQCN."""
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                found += [key for key in item if key in MODULES]
            _bare_calls(item, found)
    elif isinstance(node, dict):
        for value in node.values():
            _bare_calls(value, found)


def test_the_collection_layout_replaces_the_adhoc_directories():
    for gone in ("library", "module_utils", "doc_fragments", os.path.join("playbooks", "filter_plugins")):
        assert not os.path.exists(os.path.join(ROOT, gone)), (
            f"{gone}/ is back: plugins live in plugins/ (modules, module_utils, doc_fragments, filter)")
    assert MODULES and "session_phase" in MODULES
    link = os.path.join(ROOT, "collections", "ansible_collections", "sessionshift", "migration")
    assert os.path.realpath(link) == os.path.realpath(ROOT)
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as handle:
        galaxy = yaml.safe_load(handle)
    assert f"{galaxy['namespace']}.{galaxy['name']}" == COLLECTION
    assert "collections" in galaxy["build_ignore"]  # the link would recurse into the tarball


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda path: os.path.relpath(path, ROOT))
def test_tasks_call_the_collection_by_fqcn(path):
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    found: list[str] = []
    for document in yaml.safe_load_all(text):
        _bare_calls(document, found)
    assert not found, f"{os.path.relpath(path, ROOT)}: use {COLLECTION}.<name> for {sorted(set(found))}"
    for name in _filter_names():
        assert not re.search(rf"\|\s*{name}\b", text), f"{path}: use the filter as {COLLECTION}.{name}"


@pytest.mark.parametrize("name", MODULES)
def test_module_examples_use_the_fqcn(name):
    module = load_module(name)
    found: list[str] = []
    _bare_calls(yaml.safe_load(module.EXAMPLES), found)
    assert not found, f"{name} EXAMPLES: use {COLLECTION}.{name}"
    assert f"{COLLECTION}.{name}:" in module.EXAMPLES
