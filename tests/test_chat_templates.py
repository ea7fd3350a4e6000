"""Chat templates: `apply_chat_template` against transformers' (the oracle) on the same folders, exact strings and
ids; the sandbox; template errors; how templates are read from and saved to a folder.

Folders (see chat_assets.py): the real SmolLM2 tokenizer with its ChatML template from the GGUF metadata, and
Llama-3, Qwen2.5 (with tools) and Gemma templates over the same vocabulary with their control tokens.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import Literal, Optional, Union

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from chat_assets import family_folder, gguf_chat_template, smollm2_folder

from triformers.errors import TokenizerError
from triformers.tokenization import AutoTokenizer
from triformers.tokenization.chat_schema import get_json_schema

transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

SYSTEM_CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello! What's 2+2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "  And 3+3, in words?  "},
]
USER_ONLY = [{"role": "user", "content": "Café, naïve — 日本語 😀"}]
PREFILL = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "The colour is"}]
CONVERSATIONS = {"system": SYSTEM_CHAT, "user": USER_ONLY, "prefill": PREFILL}
NO_SYSTEM = {"user": USER_ONLY, "prefill": PREFILL, "turns": SYSTEM_CHAT[1:]}


def get_current_temperature(location: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> float:
    """Get the current temperature at a location.

    Args:
        location: The location to get the temperature for, in the format "City, Country"
        unit: The unit to return the temperature in.

    Returns:
        The current temperature at the specified location, as a float.
    """
    return 22.0


class Colour(Enum):
    RED = "red"
    GREEN = "green"


WIND_SCHEMA = {"type": "function", "function": {"name": "get_wind", "description": "Wind speed in km/h.",
                                                "parameters": {"type": "object", "properties": {
                                                    "location": {"type": "string"}}, "required": ["location"]}}}
TOOL_CHAT = [
    {"role": "user", "content": "How warm is it in Paris?"},
    {"role": "assistant", "tool_calls": [{"type": "function", "function": {
        "name": "get_current_temperature", "arguments": {"location": "Paris, France", "unit": "celsius"}}}]},
    {"role": "tool", "name": "get_current_temperature", "content": "22.0"},
    {"role": "tool", "name": "get_wind", "content": "12"},
    {"role": "assistant", "content": "It is 22 °C, with a light wind."},
    {"role": "user", "content": "Thanks!"},
]


@pytest.fixture(scope="module")
def pair():
    """family -> (ours, oracle), loaded once per module from the same folder."""
    cache = {}

    def get(family: str):
        if family not in cache:
            folder = smollm2_folder() if family == "smollm2" else family_folder(family)
            cache[family] = (AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder))
        return cache[family]

    return get


def _both(pair, family: str, *args, **kwargs):
    ours, hf = pair(family)
    return ours.apply_chat_template(*args, **kwargs), hf.apply_chat_template(*args, **kwargs)


def test_the_smollm2_template_comes_from_the_gguf_metadata(pair):
    ours, hf = pair("smollm2")
    template = gguf_chat_template()
    assert "<|im_start|>" in template and ours.chat_template == template == hf.chat_template


@pytest.mark.parametrize("family", ["smollm2", "llama3", "qwen2.5", "gemma"])
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_strings_and_ids_match_transformers(pair, family, generation_prompt):
    chats = NO_SYSTEM if family == "gemma" else CONVERSATIONS
    for name, chat in chats.items():
        kwargs = dict(add_generation_prompt=generation_prompt)
        text, want_text = _both(pair, family, chat, tokenize=False, **kwargs)
        assert text == want_text, name
        ids, want_ids = _both(pair, family, chat, return_dict=False, **kwargs)
        assert ids == want_ids and isinstance(ids[0], int), name
        batch, want_batch = _both(pair, family, chat, **kwargs)  # return_dict=True: transformers 5's default
        assert dict(batch) == dict(want_batch) and batch["input_ids"] == ids, name


@pytest.mark.parametrize("family", ["smollm2", "llama3", "qwen2.5", "gemma"])
def test_continue_final_message_matches(pair, family):
    text, want = _both(pair, family, PREFILL, tokenize=False, continue_final_message=True)
    assert text == want and text.endswith("The colour is")
    ids, want_ids = _both(pair, family, PREFILL, continue_final_message=True, return_dict=False)
    assert ids == want_ids
    ours, _ = pair(family)
    with pytest.raises(TokenizerError, match="exclude each other"):
        ours.apply_chat_template(PREFILL, continue_final_message=True, add_generation_prompt=True)


def test_qwen_tools_from_functions_and_schemas_match(pair):
    tools = [get_current_temperature, WIND_SCHEMA]
    for chat in (TOOL_CHAT, [{"role": "system", "content": "Use tools."}] + TOOL_CHAT[:1]):
        text, want = _both(pair, "qwen2.5", chat, tools=tools, tokenize=False, add_generation_prompt=True)
        assert text == want and "# Tools" in text and '"enum": ["celsius", "fahrenheit"]' in text
        ids, want_ids = _both(pair, "qwen2.5", chat, tools=tools, return_dict=False, add_generation_prompt=True)
        assert ids == want_ids
    text, want = _both(pair, "qwen2.5", TOOL_CHAT, tokenize=False)  # no tools: the default system prompt
    assert text == want and "You are Qwen" in text and "<tool_response>\n22.0\n</tool_response>" in text


def test_batches_padding_and_tensors_match(pair):
    chats = [SYSTEM_CHAT, USER_ONLY, PREFILL[:1]]
    for family in ("smollm2", "qwen2.5"):  # the two with a pad token
        for kwargs in (dict(tokenize=False), dict(return_dict=False),
                       dict(padding=True, return_tensors="pt"),
                       dict(padding="max_length", max_length=64, truncation=True, return_tensors="pt")):
            got, want = _both(pair, family, chats, add_generation_prompt=True, **kwargs)
            if isinstance(got, dict):
                assert set(got) == set(want)
                for key in want:
                    assert torch.equal(got[key], want[key]), (family, kwargs, key)
            else:
                assert got == want, (family, kwargs)


def test_assistant_token_masks_match(pair):
    ours, hf = pair("smollm2")
    template = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
                "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
                "{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}"
                "{% endfor %}")
    chats = [SYSTEM_CHAT, PREFILL + [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because."}]]
    for chat in (chats[0], chats):
        got = ours.apply_chat_template(chat, chat_template=template, return_assistant_tokens_mask=True)
        want = hf.apply_chat_template(chat, chat_template=template, return_assistant_tokens_mask=True)
        assert got["assistant_masks"] == want["assistant_masks"] and got["input_ids"] == want["input_ids"]
    got = ours.apply_chat_template(chats, chat_template=template, return_assistant_tokens_mask=True, padding=True,
                                   return_tensors="pt")
    assert got["assistant_masks"].shape == got["input_ids"].shape and int(got["assistant_masks"].sum()) > 4


def test_gemma_raise_exception_is_a_tokenizer_error_naming_the_template(pair):
    ours, hf = pair("gemma")
    with pytest.raises(Exception, match="System role not supported"):
        hf.apply_chat_template(SYSTEM_CHAT)
    with pytest.raises(TokenizerError, match=r"chat template 'default' of tokenizer .*gemma.* raised an exception: "
                                             r"System role not supported"):
        ours.apply_chat_template(SYSTEM_CHAT)
    with pytest.raises(TokenizerError, match="roles must alternate"):
        ours.apply_chat_template([USER_ONLY[0], USER_ONLY[0]])


def test_tool_schemas_of_functions_match_transformers():
    from transformers.utils import get_json_schema as hf_schema

    def search(query: str, limit: Optional[int] = None, tags: list[str] | None = None, weights: dict[str, float] = None,
               point: tuple[int, float] = (0, 0.0), mode: Union[int, str] = 1, colour: Colour = Colour.RED,
               style: str = "plain"):
        """Search the index.

        Runs one query.

        Args:
            query: What to look for,
                over two lines.
            limit (int): At most this many results.
            tags: Only results with these tags.
            weights: Per-field weights.
            point: A position.
            mode: How to search.
            colour: A colour.
            style: The style (choices: ["plain", "fancy"])

        Returns:
            The hits.
        """

    class Tools:
        def lookup(self, key: str) -> int:
            """Look a key up.

            Args:
                key: The key.
            """

    for function in (get_current_temperature, search, Tools().lookup):
        assert get_json_schema(function) == hf_schema(function)

    def untyped(x):
        """No hints.

        Args:
            x: A value.
        """

    def undocumented(x: int):
        """No argument docs."""

    for function, message in ((untyped, "no type hint"), (undocumented, "no description of 'x'")):
        with pytest.raises(TokenizerError, match=message):
            get_json_schema(function)


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__['os'] }}",
    "{{ self.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ raise_exception.__globals__ }}",
    "{% set ns = namespace() %}{% set ns._private = 1 %}",
    "{{ messages.append({'role': 'x'}) }}",
    "{{ messages[0].update(role='x') }}",
    "{{ dict.mro() }}",
    "{{ 'x' * 1000000000 }}",
    "{{ 10 ** 100000000 }}",
    "{% for i in range(10 ** 9) %}{% endfor %}",
])
def test_templates_cannot_reach_python_internals(pair, template):
    ours, _ = pair("smollm2")
    with pytest.raises(TokenizerError, match=r"the chat_template passed to apply_chat_template (failed|raised)"):
        ours.apply_chat_template(USER_ONLY, chat_template=template, tokenize=False)


def test_template_errors_name_the_template(pair, tmp_path):
    ours, _ = pair("smollm2")
    with pytest.raises(TokenizerError, match=r"chat template of tokenizer .*smollm2.*: Jinja syntax error at line 2"):
        copy = AutoTokenizer.from_pretrained(smollm2_folder(), chat_template="{% for m in messages %}\n{{ m }")
        copy.apply_chat_template(USER_ONLY)
    with pytest.raises(TokenizerError, match=r"failed: UndefinedError"):
        ours.apply_chat_template(USER_ONLY, chat_template="{{ messages[0].nothing.deeper }}", tokenize=False)
    with pytest.raises(TokenizerError, match="has no chat template"):
        AutoTokenizer.from_pretrained(smollm2_folder(), chat_template=None).apply_chat_template(USER_ONLY)


def test_unknown_keywords_are_errors_and_template_variables_pass(pair):
    ours, hf = pair("smollm2")
    with pytest.raises(TokenizerError, match=r"unknown keyword argument\(s\) add_generation_promt"):
        ours.apply_chat_template(USER_ONLY, add_generation_promt=True)
    template = "{{ bos_token }}{% if date_string is defined %}{{ date_string }}{% endif %}{{ messages[0].content }}"
    got, want = _both(pair, "smollm2", USER_ONLY, chat_template=template, date_string="26 Jul 2024", tokenize=False)
    assert got == want and got.startswith("<|im_start|>26 Jul 2024")
    with pytest.raises(TokenizerError, match=r"unknown keyword argument\(s\) padding_side"):
        ours.apply_chat_template(USER_ONLY, padding_side="left")
    got = ours.apply_chat_template(USER_ONLY, tokenizer_kwargs={"padding_side": "left"}, return_dict=False)
    assert got == hf.apply_chat_template(USER_ONLY, return_dict=False)
    with pytest.raises(TokenizerError, match="unknown keyword"):
        ours.apply_chat_template(USER_ONLY, tokenizer_kwargs={"no_such_option": 1})


def test_messages_are_plain_data_and_none_values_dropped(pair):
    class Message:  # an object with `.messages`, as transformers' Chat
        def __init__(self, messages):
            self.messages = messages

    chat = [{"role": "user", "content": "Hi", "tool_calls": None}]
    got, want = _both(pair, "qwen2.5", chat, tokenize=False)
    assert got == want
    assert pair("smollm2")[0].apply_chat_template([Message(USER_ONLY)], tokenize=False) == \
        pair("smollm2")[0].apply_chat_template([USER_ONLY], tokenize=False)
    with pytest.raises(TokenizerError, match="empty"):
        pair("smollm2")[0].apply_chat_template([])
    with pytest.raises(TokenizerError, match="not a dict"):
        pair("smollm2")[0].apply_chat_template(["hello"])


def test_templates_are_saved_as_transformers_saves_them_and_read_back(pair, tmp_path):
    ours, _ = pair("llama3")  # template read from tokenizer_config.json
    out = tmp_path / "saved"
    ours.save_pretrained(out)
    assert (out / "chat_template.jinja").read_text(encoding="utf-8") == ours.chat_template
    assert "chat_template" not in json.loads((out / "tokenizer_config.json").read_text())
    for loaded in (AutoTokenizer.from_pretrained(out), transformers.AutoTokenizer.from_pretrained(out)):
        assert loaded.chat_template == ours.chat_template
        assert loaded.apply_chat_template(SYSTEM_CHAT, tokenize=False) == ours.apply_chat_template(SYSTEM_CHAT,
                                                                                                   tokenize=False)
    named = AutoTokenizer.from_pretrained(family_folder("gemma"))
    named.chat_template = {"default": named.chat_template["default"], "tool_use": "{{ tools | tojson }}"}
    named.save_pretrained(out)  # named templates: tokenizer_config.json's list; the old .jinja file goes
    assert not (out / "chat_template.jinja").exists()
    for loaded in (AutoTokenizer.from_pretrained(out), transformers.AutoTokenizer.from_pretrained(out)):
        assert loaded.chat_template == named.chat_template
    assert AutoTokenizer.from_pretrained(out).apply_chat_template(USER_ONLY, tools=[WIND_SCHEMA], tokenize=False) == \
        json.dumps([WIND_SCHEMA], ensure_ascii=False)
    with pytest.raises(TokenizerError, match="none is called 'default'"):
        AutoTokenizer.from_pretrained(out, chat_template={"a": "x", "b": "y"}).apply_chat_template(USER_ONLY)


def test_named_template_files_are_read_and_take_priority(pair, tmp_path):
    folder = tmp_path / "named"
    shutil.copytree(family_folder("llama3"), folder)
    (folder / "additional_chat_templates").mkdir()
    (folder / "additional_chat_templates" / "rag.jinja").write_text("{{ documents | tojson }}", encoding="utf-8")
    (folder / "chat_template.jinja").write_text("{{ messages | length }}", encoding="utf-8")
    ours, hf = AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)
    assert ours.chat_template == hf.chat_template == {"default": "{{ messages | length }}",
                                                      "rag": "{{ documents | tojson }}"}
    documents = [{"title": "T", "text": "Body"}]
    for kwargs in (dict(), dict(chat_template="rag", documents=documents)):
        assert ours.apply_chat_template(USER_ONLY, tokenize=False, **kwargs) == \
            hf.apply_chat_template(USER_ONLY, tokenize=False, **kwargs)
    bad = tmp_path / "bad"
    shutil.copytree(family_folder("llama3"), bad)
    config = json.loads((bad / "tokenizer_config.json").read_text())
    (bad / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": [{"name": 1}]}))
    with pytest.raises(TokenizerError, match="chat_template must be a Jinja template"):
        AutoTokenizer.from_pretrained(bad)


JSON_LIKE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=8)
MESSAGES = st.lists(st.one_of(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "x"]),
                                                     "content": JSON_LIKE}), JSON_LIKE), max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=st.one_of(MESSAGES, st.lists(MESSAGES, max_size=2), JSON_LIKE),
       family=st.sampled_from(["smollm2", "qwen2.5", "gemma"]), tokenize=st.booleans(),
       continue_final=st.booleans())
def test_any_conversation_renders_or_is_a_tokenizer_error(pair, conversation, family, tokenize, continue_final):
    ours, _ = pair(family)
    try:
        out = ours.apply_chat_template(conversation, tokenize=tokenize, continue_final_message=continue_final)
    except TokenizerError:
        return
    assert isinstance(out, (str, list, dict))


def test_threads_share_a_tokenizer_and_its_templates(pair):
    ours, hf = pair("qwen2.5")
    chats = [SYSTEM_CHAT, USER_ONLY, TOOL_CHAT, PREFILL] * 8
    want = [hf.apply_chat_template(c, return_dict=False, tools=[WIND_SCHEMA]) for c in chats]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: ours.apply_chat_template(c, return_dict=False, tools=[WIND_SCHEMA]), chats))
    assert got == want
