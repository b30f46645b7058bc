"""Edit files for `planexec approve --edit`: JSON or YAML without aliases, size-capped."""

import json
from pathlib import Path

import pytest

from app.cli.steps_file import MAX_EDIT_FILE_BYTES, load_steps_file

# 301 bytes that expand to 9**9 strings with a YAML loader that follows aliases.
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "steps: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
)


def test_json_and_yaml_lists_and_objects_load(tmp_path: Path) -> None:
    steps = [{"id": "a", "description": "x", "depends_on": []}]
    (tmp_path / "e.json").write_text(json.dumps({"steps": steps}))
    (tmp_path / "e.yaml").write_text("- id: a\n  description: x\n  depends_on: []\n")
    assert load_steps_file(tmp_path / "e.json") == steps
    assert load_steps_file(tmp_path / "e.yaml") == steps


@pytest.mark.parametrize(
    "text",
    [
        ALIAS_BOMB,
        "- &s {id: a, description: x}\n- *s\n",
        "- &s {id: a, description: x}\n",  # an anchor alone: refused as the docs say
        "- !!python/object:os.system {}\n",
    ],
    ids=["alias-bomb", "one-alias", "anchor-only", "python-tag"],
)
def test_aliases_and_unsafe_tags_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"cannot read steps from '{path}'"):
        load_steps_file(path)


def test_alias_error_names_the_rule(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(ALIAS_BOMB)
    with pytest.raises(ValueError, match=r"anchors and aliases \(& and \*\) are not allowed"):
        load_steps_file(tmp_path / "b.yaml")


def test_size_and_depth_are_capped(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("- {id: a, description: '" + "x" * MAX_EDIT_FILE_BYTES + "'}\n")
    with pytest.raises(ValueError, match=f"is over {MAX_EDIT_FILE_BYTES} bytes"):
        load_steps_file(big)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply|cannot read steps"):
        load_steps_file(deep)


def test_a_yaml_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.yaml"
    path.write_text("- id: s9\n  description: [unclosed\n")
    with pytest.raises(ValueError) as refused:
        load_steps_file(path)
    assert f"in '{path}', line 2, column 16" in str(refused.value)
    assert "<unicode string>" not in str(refused.value)
