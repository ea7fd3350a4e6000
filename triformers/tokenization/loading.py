"""Tokenizer folders: read one into a `Tokenizer`, write one that transformers' AutoTokenizer loads.

Reading follows transformers 5.x: `tokenizer.json` when present, else the legacy files of the family
named by tokenizer_config.json `tokenizer_class` (or config.json `model_type`); special tokens from
the family's defaults, then special_tokens_map.json, tokenizer_config.json and the caller's overrides.
Every value read from tokenizer_config.json / special_tokens_map.json is checked where it is read
(`check_config`), with the file and key named. The files are read under the folder's read lock, so a
concurrent save never shows half of one set and half of another.
Writing derives the family flags (do_lower_case, add_prefix_space, extra_ids) from the backend itself,
because transformers rebuilds the family's pipeline from those flags rather than from tokenizer.json;
the files are published as one set (`io.publish`). Chat templates are read and saved as transformers 5 does
(see `chat_files.py`).

`from_pretrained` keywords: tokenizer_config.json keys override the file's (`padding_side`, `model_max_length`,
`pad_token`, `chat_template`, ...) and are saved like them; the loading options (`use_fast`, `cache_dir`,
`revision`, `local_files_only`, `token`, `subfolder`, `trust_remote_code`) are used and never saved; any other
keyword is a TokenizerError naming it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tokenizers import AddedToken

from ..errors import TokenizerError
from ..io.files import read_json
from ..io.hub import resolve
from ..io.pretrained import Checkpoint, gguf_location, gguf_source
from ..io.publish import FolderView, publish, reading
from . import converters as cv
from .chat_files import as_templates, read_chat_templates, stale_templates
from .tokenizer import Tokenizer

logger = logging.getLogger("triformers")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json + merges.txt", "spiece.model")
# keys that describe the old files or run code; never carried into a saved tokenizer_config.json
_DROPPED_KEYS = {
    "auto_map",
    "special_tokens_map_file",
    "tokenizer_file",
    "name_or_path",
    "added_tokens_decoder",
    "additional_special_tokens",
    "extra_special_tokens",
    "vocab_file",
    "merges_file",
    "chat_template",  # kept as Tokenizer.chat_template, written back by `save_folder`
    "split_special_tokens",  # kept as Tokenizer.split_special_tokens
    "is_local",  # transformers 5 writes its loading options into the file; they describe that load only
    "local_files_only",
}
# from_pretrained keywords that say how to find the files, not what the tokenizer is: used, never saved
# device_map is transformers' too: it lands in the tokenizer's init kwargs, where nothing reads it (the course's labs
# pass device_map="auto" to AutoTokenizer.from_pretrained); here it is accepted and means nothing
LOADING_OPTIONS = ("use_fast", "cache_dir", "revision", "local_files_only", "token", "subfolder", "trust_remote_code",
                   "device_map")
# tokenizer_config.json keys a caller may override (besides the keys of the folder's own file)
CONFIG_KEYS = frozenset({*cv.SPECIAL_KEYS, "additional_special_tokens", "extra_special_tokens", "model_max_length",
                         "padding_side", "truncation_side", "strip_accents", "model_input_names", "extra_ids",
                         "tokenizer_class", "chat_template", "legacy", "split_special_tokens", "errors",
                         "sp_model_kwargs", "spaces_between_special_tokens", "added_tokens_decoder",
                         "do_basic_tokenize", "never_split"})


MAX_EXTRA_IDS = 10_000  # T5 has 100 sentinels; a count beyond any model would build millions of tokens
_FLAGS = ("add_prefix_space", "add_bos_token", "add_eos_token", "trim_offsets", "do_lower_case",
          "tokenize_chinese_chars", "clean_up_tokenization_spaces", "legacy", "split_special_tokens")


def _read_optional_json(view: FolderView, name: str, what: str) -> dict:
    path = view.path(name)
    if not path.exists() and not path.is_symlink():
        return {}
    return read_json(path, what, TokenizerError)


def _is_token(value: Any) -> bool:
    if isinstance(value, dict):
        flags = ("single_word", "lstrip", "rstrip", "normalized", "special")
        return isinstance(value.get("content"), str) and all(isinstance(value.get(f, False), bool) for f in flags)
    return isinstance(value, (str, AddedToken))


def check_config(config: dict, where: Path | str) -> dict:
    """tokenizer_config.json (or special_tokens_map.json) values checked against what transformers writes;
    a TokenizerError names the file and the key."""
    def bad(key: str, expected: str) -> TokenizerError:
        return TokenizerError(f"{where}: {key} must be {expected}, got {config[key]!r:.100}")

    def present(key: str) -> bool:
        return config.get(key) is not None

    for key in cv.SPECIAL_KEYS:
        if present(key) and not _is_token(config[key]):
            raise bad(key, "a token (a string or {'content': ...})")
    for key in ("additional_special_tokens", "extra_special_tokens"):
        value = config.get(key)
        values = list(value.values()) if isinstance(value, dict) else value
        if value is not None and (not isinstance(values, list) or not all(_is_token(v) for v in values)):
            raise bad(key, "a list of tokens")
    decoder = config.get("added_tokens_decoder")
    if decoder is not None and (not isinstance(decoder, dict) or not all(
            isinstance(k, str) and k.isdigit() and len(k) < 11 and _is_token(v) for k, v in decoder.items())):
        raise bad("added_tokens_decoder", "an object of token ids -> tokens")
    length = config.get("model_max_length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, (int, float)) or length < 0
                               or (isinstance(length, float) and not length.is_integer())):
        raise bad("model_max_length", "a non-negative integer")
    for key in ("padding_side", "truncation_side"):
        if present(key) and config[key] not in ("left", "right"):
            raise bad(key, "'left' or 'right'")
    for key in _FLAGS:
        if present(key) and not isinstance(config[key], bool):
            raise bad(key, "true or false")
    if present("strip_accents") and not isinstance(config["strip_accents"], bool):
        raise bad("strip_accents", "true, false or null")
    names = config.get("model_input_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise bad("model_input_names", "a list of strings")
    extra = config.get("extra_ids")
    if extra is not None and (type(extra) is not int or not 0 <= extra <= MAX_EXTRA_IDS):
        raise bad("extra_ids", f"an integer in 0..{MAX_EXTRA_IDS}")
    if present("tokenizer_class") and not isinstance(config["tokenizer_class"], str):
        raise bad("tokenizer_class", "a class name")
    if present("chat_template") and as_templates(config["chat_template"]) is None:
        raise bad("chat_template", "a Jinja template or a list of {'name': ..., 'template': ...}")
    return config


def load_folder(
    name_or_path: str,
    revision: str | None = None,
    cache_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    gguf_file: str | None = None,
) -> Tokenizer:
    overrides = dict(overrides or {})
    options = {key: overrides.pop(key) for key in LOADING_OPTIONS if key in overrides}
    revision = options.pop("revision", revision)
    cache_dir = options.pop("cache_dir", cache_dir)
    folder, model_type = None, None
    if options.get("trust_remote_code"):
        where = name_or_path.folder if isinstance(name_or_path, Checkpoint) else name_or_path
        raise TokenizerError(f"{where}: trust_remote_code=True is refused: triformers never runs code from a "
                             "model folder or the hub (drop the argument)")
    if isinstance(name_or_path, Checkpoint):  # already resolved, its config read
        if name_or_path.gguf is not None:
            return _load_gguf(gguf_source(name_or_path), overrides, str(name_or_path.gguf))
        folder, model_type = name_or_path.folder, name_or_path.config.model_type
        name_or_path = str(folder)
    if options.get("use_fast", True) is not True:
        logger.warning("use_fast=%r is ignored: triformers tokenizers are always fast (`tokenizers`) ones, as "
                       "transformers 5's are", options["use_fast"])
    if folder is None:
        gguf = gguf_location(name_or_path, gguf_file, revision)
        if gguf is not None:
            from ..io.gguf import GGUFFile

            return _load_gguf(GGUFFile(gguf), overrides, str(name_or_path))
        folder = resolve(name_or_path, revision=revision, cache_dir=cache_dir,
                         local_files_only=bool(options.get("local_files_only")), token=options.get("token"))
    folder = _subfolder(folder, options.get("subfolder"))
    with reading(folder) as view:
        return _load(folder, view, overrides, str(name_or_path), model_type)


def _subfolder(folder: Path, subfolder: Any) -> Path:
    """`folder/subfolder`, which must be a folder inside `folder`."""
    if not subfolder:
        return folder
    if not isinstance(subfolder, (str, Path)) or Path(subfolder).is_absolute() or ".." in Path(subfolder).parts:
        raise TokenizerError(f"subfolder must be a relative folder name inside {folder}, got {subfolder!r}")
    inner = folder.joinpath(*Path(subfolder).parts)
    if not inner.is_dir():
        raise TokenizerError(f"no subfolder {subfolder!r} in {folder}")
    return inner


def _check_overrides(overrides: dict[str, Any], config: dict, config_file: Path) -> None:
    """from_pretrained keywords are tokenizer_config.json keys (known ones, or the folder's own): else an error."""
    unknown = sorted(k for k in overrides if k not in CONFIG_KEYS and k not in _FLAGS and k not in config)
    if unknown:
        raise TokenizerError(f"AutoTokenizer.from_pretrained: unknown keyword argument(s) {', '.join(unknown)}: not "
                             f"tokenizer_config.json keys ({config_file} or transformers' usual ones) nor loading "
                             f"options ({', '.join(LOADING_OPTIONS)})")


def _load(folder: Path, view: FolderView, overrides: dict[str, Any], name_or_path: str,
          model_type: str | None) -> Tokenizer:
    config_file = folder / "tokenizer_config.json"
    config = check_config(_read_optional_json(view, "tokenizer_config.json", "tokenizer config"), config_file)
    _check_overrides(overrides, config, config_file)
    files_template = read_chat_templates(view)
    if files_template is not None and "chat_template" not in overrides:  # template files take priority
        config = {**config, "chat_template": files_template}
    config = check_config({**config, **overrides}, "tokenizer arguments") if overrides else config
    if "auto_map" in config:
        logger.warning("%s: ignoring 'auto_map' (triformers never runs code from a model folder)", config_file)
    special_map = check_config(_read_optional_json(view, "special_tokens_map.json", "special tokens map"),
                               folder / "special_tokens_map.json")
    if model_type is None:  # the model's config names the family when tokenizer_config.json does not
        model_type = _read_optional_json(view, "config.json", "model config").get("model_type")
        model_type = model_type if isinstance(model_type, str) else None
    family = cv.family_for(config.get("tokenizer_class"), model_type, config_file)
    special = dict(family.specials) if family is not None else {}
    for source in (special_map, config):  # config already holds the caller's overrides
        special.update({k: v for k, v in source.items() if k in cv.SPECIAL_KEYS})
    additional = list(
        special.get("additional_special_tokens")
        or config.get("additional_special_tokens")
        or config.get("extra_special_tokens")
        or []
    )
    if isinstance(additional, dict):  # transformers 4's named extras
        additional = list(additional.values())

    backend, family, special, additional, post = _backend(folder, view, config, family, special, additional)
    if post is not None:  # legacy files: tokens the config pins to ids, in id order
        for _index, token in sorted(config.get("added_tokens_decoder", {}).items(), key=lambda kv: int(kv[0])):
            if backend.token_to_id(_name(token)) is None:
                backend.add_tokens(
                    [
                        Tokenizer._as_added(token)
                        if isinstance(token, dict) and token.get("special")
                        else AddedToken(_name(token), normalized=False)
                    ]
                )
    tokenizer = assemble(backend, family, special, additional, config, name_or_path)
    if post is not None:
        set_post_processor(tokenizer, post, config)
    return tokenizer


def _load_gguf(gguf: Any, overrides: dict[str, Any], name_or_path: str) -> Tokenizer:
    """The tokenizer a GGUF file's metadata describe (`tokenization.gguf`), with the caller's overrides."""
    from .gguf import GGUF_FAMILY, tokenizer_parts

    backend, config = tokenizer_parts(gguf)
    config = check_config({**config, **overrides}, "tokenizer arguments") if overrides else config
    special = {k: v for k, v in config.items() if k in cv.SPECIAL_KEYS and v is not None}
    additional = list(config.get("additional_special_tokens") or [])
    tokenizer = assemble(backend, GGUF_FAMILY, special, additional, config, name_or_path)
    set_post_processor(tokenizer, "gpt2", config)  # optional BOS / EOS, as transformers' update_post_processor
    return tokenizer


def assemble(backend: Any, family: cv.Family, special: dict, additional: list, config: dict,
             name_or_path: str) -> Tokenizer:
    """A Tokenizer over `backend` with the settings of a tokenizer_config.json-style dict."""
    return Tokenizer(
        backend,
        family,
        special_tokens={k: v for k, v in special.items() if k in cv.SPECIAL_KEYS},
        additional_special_tokens=additional,
        model_max_length=int(config.get("model_max_length") or cv.VERY_LARGE_INTEGER),
        padding_side=config.get("padding_side") or family.padding_side,
        truncation_side=config.get("truncation_side") or "right",
        clean_up_tokenization_spaces=config.get("clean_up_tokenization_spaces", False),
        model_input_names=config.get("model_input_names"),
        config={k: v for k, v in config.items() if k not in _DROPPED_KEYS and k not in cv.SPECIAL_KEYS},
        name_or_path=name_or_path,
        chat_template=as_templates(config["chat_template"]) if config.get("chat_template") is not None else None,
        split_special_tokens=bool(config.get("split_special_tokens")),
    )


def _backend(folder: Path, view: FolderView, config: dict, family: cv.Family | None, special: dict,
             additional: list) -> tuple[Any, cv.Family, dict, list, str | None]:
    """The backend from tokenizer.json or the legacy files (in transformers' order of preference), with the
    family, special tokens and additional tokens those files imply, and the legacy post-processor to set."""
    config_file = folder / "tokenizer_config.json"
    if view.path("tokenizer.json").exists():
        backend = cv.load_tokenizer_json(view.path("tokenizer.json"))
        family = family or cv.GENERIC
        cv.apply_family_flags(backend, family, config)
        post = None
    elif view.path("vocab.txt").exists():
        family = _check_family(family, cv.BERT, folder / "vocab.txt", config_file)
        special = {**cv.BERT.specials, **special}
        backend = cv.bert_from_vocab_txt(view.path("vocab.txt"), {**config, "unk_token": _name(special["unk_token"])})
        post = "bert"
    elif view.path("vocab.json").exists() and view.path("merges.txt").exists():
        family = (
            family
            if family in (cv.GPT2, cv.ROBERTA)
            else _check_family(family, cv.GPT2, folder / "vocab.json", config_file)
        )
        special = {**family.specials, **special}
        backend = cv.byte_level_bpe(
            view.path("vocab.json"), view.path("merges.txt"), bool(config.get("add_prefix_space", False))
        )
        post = family.name
    elif view.path("spiece.model").exists():
        family = _check_family(family, cv.T5, folder / "spiece.model", config_file)
        special = {**cv.T5.specials, **special}
        extra_ids = cv.T5_EXTRA_IDS if config.get("extra_ids") is None else config["extra_ids"]
        backend, controls = cv.t5_from_spm(view.path("spiece.model"), extra_ids)
        sentinels = [f"<extra_id_{i}>" for i in range(extra_ids)]
        if not any("<extra_id_" in _name(t) for t in additional):
            additional = controls + [t for t in additional if _name(t) not in controls] + sentinels
        post = "t5"
    else:
        present = sorted(p.name for p in folder.iterdir())[:20]
        raise TokenizerError(
            f"no tokenizer files in {folder}: expected one of {', '.join(TOKENIZER_FILES)}; found {present}"
        )
    return backend, family, special, additional, post


def _name(token: Any) -> str:
    return str(token["content"]) if isinstance(token, dict) else str(token)


def _check_family(found: cv.Family | None, files: cv.Family, path: Path, config_file: Path) -> cv.Family:
    if found is not None and found is not files and found is not cv.GENERIC:
        raise TokenizerError(
            f"{config_file} names a {found.hf_class} but the folder holds {path.name}, "
            f"the vocabulary of a {files.hf_class}"
        )
    return files


def set_post_processor(tokenizer: Tokenizer, family: str, config: dict) -> None:
    """The special-token template a family wraps around each sequence (and pair)."""
    t = tokenizer
    if family == "bert":
        t.backend.post_processor = cv.bert_post_processor(t.cls_token, t.cls_token_id, t.sep_token, t.sep_token_id)
    elif family == "roberta":
        t.backend.post_processor = cv.roberta_post_processor(
            t.cls_token,
            t.cls_token_id,
            t.sep_token,
            t.sep_token_id,
            bool(config.get("add_prefix_space", False)),
            bool(config.get("trim_offsets", True)),
        )
    elif family == "gpt2":
        t.backend.post_processor = cv.gpt2_post_processor(
            t.bos_token,
            t.bos_token_id,
            t.eos_token,
            t.eos_token_id,
            bool(config.get("add_bos_token", False)),
            bool(config.get("add_eos_token", False)),
        )
    elif family == "t5":
        t.backend.post_processor = cv.t5_post_processor(t.eos_token, t.eos_token_id)


def _family_flags(tokenizer: Tokenizer) -> dict[str, Any]:
    """The tokenizer_config.json flags from which transformers rebuilds this backend's pipeline."""
    family = tokenizer.family
    if family is cv.BERT:
        norm = cv.backend_component(tokenizer.backend, "normalizer") or {}
        if norm.get("type") != "BertNormalizer":
            return {}
        return {
            "do_lower_case": norm["lowercase"],
            "strip_accents": norm["strip_accents"],
            "tokenize_chinese_chars": norm["handle_chinese_chars"],
        }
    if family in (cv.GPT2, cv.ROBERTA, cv.QWEN2, cv.GPT_NEOX):
        pre = cv.backend_component(tokenizer.backend, "pre_tokenizer") or {}
        return {"add_prefix_space": bool(pre.get("add_prefix_space", False))}
    if family is cv.T5:
        return {"extra_ids": len(tokenizer.sentinel_ids)}
    return {}


def save_folder(tokenizer: Tokenizer, save_directory: str) -> list[str]:
    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise TokenizerError(f"cannot save a tokenizer into {folder}: it is a file")
    added = {
        str(i): {
            "content": t.content,
            "lstrip": t.lstrip,
            "normalized": t.normalized,
            "rstrip": t.rstrip,
            "single_word": t.single_word,
            "special": t.special,
        }
        for i, t in sorted(tokenizer.backend.get_added_tokens_decoder().items())
    }
    config = {
        **tokenizer.config,
        "tokenizer_class": tokenizer.family.hf_class,
        **_family_flags(tokenizer),
        **{k: v for k, v in tokenizer.special_tokens_map.items() if k != "additional_special_tokens"},
        "additional_special_tokens": tokenizer.additional_special_tokens,
        "added_tokens_decoder": added,
        "model_max_length": tokenizer.model_max_length,
        "padding_side": tokenizer.padding_side,
        "truncation_side": tokenizer.truncation_side,
        "clean_up_tokenization_spaces": tokenizer.clean_up_tokenization_spaces,
        "model_input_names": tokenizer.model_input_names,
    }
    if tokenizer.split_special_tokens:
        config["split_special_tokens"] = True
    template = tokenizer.chat_template
    if template is not None and as_templates(template) is None:
        raise TokenizerError(f"cannot save tokenizer.chat_template: it must be a string or a dict of named strings, "
                             f"got {type(template).__name__}")
    if isinstance(template, dict):  # transformers' format for named templates in tokenizer_config.json
        config["chat_template"] = [{"name": name, "template": text} for name, text in template.items()]
    with tokenizer._lock:  # the backend's per-call settings are never in what is saved
        backend_text = tokenizer.backend.to_str(pretty=True)
    files = {
        "tokenizer.json": backend_text + "\n",
        "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        "special_tokens_map.json": json.dumps(tokenizer.special_tokens_map, indent=2, ensure_ascii=False) + "\n",
    }
    if isinstance(template, str):
        files["chat_template.jinja"] = template  # as it is: a template's last character is part of its output
    with publish(folder, stale=stale_templates, error=TokenizerError) as staging:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
    return [str(folder / name) for name in files]
