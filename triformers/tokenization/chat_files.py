"""Where a tokenizer folder keeps its chat templates, as transformers 5 reads and writes them.

Read: `chat_template.jinja` (the "default" template) and `additional_chat_templates/<name>.jinja` (named ones),
which take priority over tokenizer_config.json's `chat_template` (a string, or a list of {"name", "template"}).
Saved (by
`loading.save_folder`): one template as `chat_template.jinja`, named templates as tokenizer_config.json's list,
and the template files of an earlier save removed with the same publication, so the next load never trusts them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import TokenizerError
from ..io.files import read_text
from ..io.publish import FolderView

MAX_CHAT_TEMPLATES = 64
MAX_TEMPLATE_BYTES = 4 * 2**20  # real chat templates are kilobytes


def as_templates(value: Any) -> str | dict[str, str] | None:
    """A chat_template value as Tokenizer.chat_template holds it (a string, or {name: template}); None if it is
    neither a string nor named strings (a list of {"name", "template"}, or a dict)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("template"), str)
                   for v in value):
            return None
        value = {v["name"]: v["template"] for v in value}
    if isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    return None


def read_chat_templates(view: FolderView) -> str | dict[str, str] | None:
    """The folder's template files: chat_template.jinja ("default") and additional_chat_templates/<name>.jinja."""
    templates = {}
    if view.path("chat_template.jinja").exists():
        templates["default"] = read_text(view.path("chat_template.jinja"), "chat template", MAX_TEMPLATE_BYTES,
                                        TokenizerError)
    extra = view.path("additional_chat_templates")
    if extra.is_dir():
        files = sorted(extra.glob("*.jinja"))
        if len(files) > MAX_CHAT_TEMPLATES:
            raise TokenizerError(f"{extra}: {len(files)} chat templates; at most {MAX_CHAT_TEMPLATES} are read")
        for path in files:
            templates[path.name[:-len(".jinja")]] = read_text(path, "chat template", MAX_TEMPLATE_BYTES, TokenizerError)
    if list(templates) == ["default"]:
        return templates["default"]
    return templates or None


def stale_templates(folder: Path) -> list[str]:
    """Template files an earlier save left that this one does not write: the next load would trust them."""
    extra = folder / "additional_chat_templates"
    named = [f"additional_chat_templates/{p.name}" for p in extra.glob("*.jinja")] if extra.is_dir() else []
    return ["chat_template.jinja", *named]
