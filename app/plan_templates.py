"""Goal templates: a named goal with {placeholders} and the parameters that fill them.

A run that names a template (`Context.template`, `Context.params`) may reuse that template's cached
plan (graphs/plan_cache.py). Templates can be declared in a YAML or JSON file for the command line:

    templates:
      - name: region-report
        goal: "Monthly revenue report for region {region}, month {month}."
        params: [region, month]

Everything here is checked with messages that name the input and what to do, because template
files and parameters are typed by people (and come from server callers).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Store namespaces refuse '.', and a name is printed and used as a key: keep it plain.
TEMPLATE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,39}$"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_PARAMS = 20
MAX_VALUE_CHARS = 500
MAX_FILE_BYTES = 1_000_000


class TemplateError(ValueError):
    """A template, its file or its parameters cannot be used; the message says why."""


class GoalTemplate(BaseModel):
    """One declared template."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TEMPLATE_NAME, description="The template's name.")
    goal: str = Field(min_length=1, max_length=4000, description="Goal text with {placeholders}.")
    params: list[str] = Field(default_factory=list, max_length=MAX_PARAMS)

    @model_validator(mode="after")
    def _placeholders_match(self) -> GoalTemplate:
        for name in self.params:
            if not re.match(PARAM_NAME, name):
                raise ValueError(f"parameter name {name!r} must be a letter or _ then letters, "
                                 "digits or _ (at most 40)")  # fmt: skip
        if len(set(self.params)) != len(self.params):
            raise ValueError(f"parameter names repeat: {self.params}")
        used = set(PLACEHOLDER.findall(self.goal))
        undeclared = sorted(used - set(self.params))
        unused = sorted(set(self.params) - used)
        if undeclared:
            raise ValueError(f"the goal uses {{{undeclared[0]}}}, which is not in params")
        if unused:
            raise ValueError(f"param {unused[0]!r} does not appear in the goal as {{{unused[0]}}}")
        return self

    def render(self, params: dict[str, str]) -> str:
        """The goal with `params` filled in; TemplateError naming a missing or unknown one."""
        check_params(params)
        missing = [p for p in self.params if p not in params]
        unknown = sorted(set(params) - set(self.params))
        if missing or unknown:
            parts = [f"missing --param {p}=VALUE" for p in missing]
            parts += [f"unknown parameter {p!r}" for p in unknown]
            declared = ", ".join(self.params) or "none"
            raise TemplateError(
                f"template {self.name!r}: {'; '.join(parts)} (its parameters: {declared})"
            )
        return fill(self.goal, params)


class TemplateFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    templates: list[GoalTemplate] = Field(min_length=1)


def fill(text: str, params: dict[str, str]) -> str:
    """`text` with each `{name}` of `params` replaced by its value, in one pass (a value that
    itself contains `{other}` is left as it is)."""
    if not params:
        return text
    pattern = re.compile(r"\{(" + "|".join(map(re.escape, params)) + r")\}")
    return pattern.sub(lambda m: params[m.group(1)], text)


def check_params(params: dict[str, Any]) -> None:
    """TemplateError unless `params` are at most MAX_PARAMS names -> non-empty strings."""
    if len(params) > MAX_PARAMS:
        raise TemplateError(f"{len(params)} parameters given; at most {MAX_PARAMS}")
    for name, value in params.items():
        if not isinstance(name, str) or not re.match(PARAM_NAME, name):
            raise TemplateError(
                f"parameter name {name!r} must be a letter or _ then letters, digits or _"
            )
        if not isinstance(value, str):
            raise TemplateError(f"parameter {name!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise TemplateError(f"parameter {name!r} is empty; give it a value")
        if len(value) > MAX_VALUE_CHARS:
            raise TemplateError(f"parameter {name!r} is longer than {MAX_VALUE_CHARS} characters")


def check_template_name(name: str) -> None:
    if not re.match(TEMPLATE_NAME, name):
        raise TemplateError(
            f"template name {name!r} must be 1-64 letters, digits, '-' or '_' (no '.'), "
            "starting with a letter or digit"
        )


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`--param key=value` options as a dict; TemplateError for a malformed or repeated one."""
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise TemplateError(f"--param {pair!r} must be KEY=VALUE")
        name = name.strip()
        if name in params:
            raise TemplateError(f"--param {name} is given twice")
        params[name] = value
    check_params(params)
    return params


def load_templates(path: Path) -> dict[str, GoalTemplate]:
    """The templates declared in a YAML or JSON file, by name."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise TemplateError(f"templates file {str(path)!r} is larger than 1 MB")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read templates file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TemplateError(f"templates file {str(path)!r} is not UTF-8 text") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TemplateError(f"templates file {str(path)!r} is not valid: {exc}") from None
    try:
        spec = TemplateFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "the file"
        raise TemplateError(
            f"templates file {str(path)!r}: {where}: {error['msg']} (expected "
            "'templates: [{name, goal, params}]')"
        ) from None
    names = [t.name for t in spec.templates]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TemplateError(
            f"templates file {str(path)!r}: template {repeated[0]!r} is declared twice"
        )
    return {t.name: t for t in spec.templates}


def template_goal(path: Path, name: str, params: dict[str, str]) -> str:
    """The goal of template `name` from the file at `path`, filled with `params`."""
    templates = load_templates(path)
    if name not in templates:
        known = ", ".join(sorted(templates))
        raise TemplateError(
            f"templates file {str(path)!r} has no template {name!r} (it has: {known})"
        )
    return templates[name].render(params)
