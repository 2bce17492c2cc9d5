"""docs/configuration.md is generated from the code (``python -m demo.gen_docs``) and must be current.

Also checks that the generator reads the real sources: every option, role variable and plugin flag
defined in code appears in the rendered text, so a generator that silently drops a source fails.
"""
from __future__ import annotations

import yaml

from demo import gen_docs


def test_configuration_reference_is_current() -> None:
    rendered = gen_docs.render()
    committed = gen_docs.OUTPUT.read_text() if gen_docs.OUTPUT.exists() else ""
    assert committed == rendered, "docs/configuration.md is stale: run .venv/bin/python -m demo.gen_docs"


def test_reference_covers_every_source() -> None:
    rendered = gen_docs.render()
    from sysinv_ext.conf import opts

    for lister in (opts.list_agent_opts, opts.list_conductor_opts):
        for _group, group_opts in lister():
            for opt in group_opts:
                assert f"| `{opt.name}` |" in rendered, opt.name
    specs = yaml.safe_load(gen_docs.ARGUMENT_SPECS.read_text())["argument_specs"]["main"]["options"]
    for name in specs:
        assert f"| `{name}` |" in rendered, name
    from gpu_plugin.cli import flagset

    for name in flagset().flags:
        assert f"`-{name}`" in rendered, name
