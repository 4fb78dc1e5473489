"""Where the templates are found (src/singlewindow/render.py)."""

from __future__ import annotations

from pathlib import Path

from singlewindow import render


def test_a_deployed_node_renders_from_where_the_app_role_put_the_templates(
        tmp_path: Path) -> None:
    """Installed into a virtualenv the package has no conf/ beside it: swctl on the node
    finds the templates the app role installed, without --conf-dir."""
    venv_lib = tmp_path / "venv/lib/python3.11"
    venv_lib.mkdir(parents=True)
    assert render.default_conf_dir({}, venv_lib / "conf") == Path("/usr/share/singlewindow/conf")
    assert render.default_conf_dir({"SW_CONF_DIR": "/srv/overrides"},
                                   venv_lib / "conf") == Path("/srv/overrides")
    assert render.default_conf_dir({}, tmp_path) == tmp_path
