"""Every bundled model's scenario prompt ends where a reply can start on a clean token (issue 11, point 4)."""

import pytest

from empathy_core.core.models import BUNDLED, REGISTRY, load_tokenizer
from empathy_core.core.prompts import render_prompt, render_reply
from empathy_core.core.scenarios import SCENARIO_IDS

REPLY = "I stay in the room and answer them."
SPACE_TOKENS = {" ", "\u2581", "\u0120"}  # a lone space as SentencePiece and byte-level BPE write it


def clean_boundary(tok, prompt: str, joined: str) -> bool:
    """The prompt's tokens are a prefix of the tokens of prompt + reply, and the prompt's last token is no lone space."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    j = tok(joined, add_special_tokens=False)["input_ids"]
    return j[: len(p)] == p and tok.convert_ids_to_tokens(p[-1]) not in SPACE_TOKENS


@pytest.mark.real
@pytest.mark.parametrize("key", BUNDLED)
def test_prompt_ends_on_a_clean_token(key):
    tok = load_tokenizer(key)
    chat = REGISTRY[key].chat
    for scenario in SCENARIO_IDS:
        for instruction in ("", "empathic", "task"):
            prompt = render_prompt(tok, chat, scenario, instruction=instruction)
            assert not prompt.endswith(" "), (key, scenario)
            joined = prompt + ("" if chat else " ") + REPLY
            assert clean_boundary(tok, prompt, joined), (key, scenario, instruction, prompt[-30:])


@pytest.mark.real
def test_the_old_gemma_prompt_fails_the_check():
    """The check can fail: Gemma's old prompt ended in a space, which its tokenizer kept as a lone token."""
    tok = load_tokenizer("gemma3-270m")
    old = render_prompt(tok, False, "maze") + " "
    assert not clean_boundary(tok, old, old + REPLY)


def test_render_reply_keeps_the_space_before_a_base_models_reply(tiny_tok):
    tiny_tok_no_chat = tiny_tok.__class__(tokenizer_object=tiny_tok.backend_tokenizer)
    full, a, b = render_reply(tiny_tok_no_chat, "maze", REPLY)
    assert full[a:b] == REPLY and full[:a].endswith("Me: ")
