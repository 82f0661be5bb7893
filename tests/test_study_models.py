"""The study's three models from their committed configs (core/study_configs): exact layer counts, full-size
parameter counts, a reduced-width random-init build of each, and their chat templates through the app's
prompt renderer. No download."""

import copy

import pytest
import torch

from empathy_core.core.memory import count_params
from empathy_core.core.models import REGISTRY, find_layers
from empathy_core.core.prompts import render_prompt
from empathy_core.core.study_models import STUDY_KEYS, random_init, study_config, study_record

# Published figures (model cards): decoder layers, and parameter counts as the hub reports them.
PUBLISHED = {"phi3-mini": (32, 3.82e9), "qwen2.5-7b": (28, 7.62e9), "dolphin-llama3.1-8b": (32, 8.03e9),
             "llama3.1-8b": (32, 8.03e9)}
ENDINGS = {"phi3-mini": "<|end|>\n<|assistant|>\n", "qwen2.5-7b": "<|im_end|>\n<|im_start|>assistant\n",
           "dolphin-llama3.1-8b": "<|im_end|>\n<|im_start|>assistant\n"}


def test_the_study_keys_are_the_registry_s_study_models():
    assert set(STUDY_KEYS) == {k for k, s in REGISTRY.items() if s.source == "hub"}
    for key in STUDY_KEYS:
        assert study_record(key)["hub_id"] == REGISTRY[key].hub_id


@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_full_size_config_has_the_published_layers_and_parameters(key):
    cfg = study_config(key)
    layers, params = PUBLISHED[key]
    assert cfg.num_hidden_layers == layers
    assert count_params(cfg) == pytest.approx(params, rel=0.005)  # from shapes on the meta device


@pytest.mark.parametrize("key", STUDY_KEYS)
def test_reduced_width_random_init_keeps_the_architecture(key):
    heads = study_config(key).num_attention_heads
    model = random_init(key, hidden=4 * heads, intermediate=8 * heads)
    full = study_config(key)
    assert len(find_layers(model)) == full.num_hidden_layers
    assert model.config.model_type == full.model_type and model.config.vocab_size == full.vocab_size
    assert model.config.num_key_value_heads == full.num_key_value_heads
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        out = model(input_ids=ids, output_hidden_states=True)
    assert out.logits.shape == (1, 4, full.vocab_size) and len(out.hidden_states) == full.num_hidden_layers + 1


def test_reduced_width_must_divide_the_heads():
    with pytest.raises(ValueError, match="multiple of the 28 attention heads"):
        study_config("qwen2.5-7b", hidden=100)


@pytest.mark.parametrize("key", STUDY_KEYS)
def test_chat_template_renders_a_scenario_prompt_with_the_model_s_ending(key, tiny_tok):
    tok = copy.deepcopy(tiny_tok)
    tok.chat_template = study_record(key)["chat_template"]
    text = render_prompt(tok, True, "listener", user="Someone in the chat says they had a rough day.")
    assert text.endswith(ENDINGS[key]), text[-80:]
    assert "Someone in the chat says they had a rough day." in text and "You are an agent playing" in text
    if key == "phi3-mini":
        assert "<|user|>\nSomeone in the chat" in text and "<|im_start|>" not in text
    else:
        assert "<|im_start|>user\nSomeone in the chat" in text and "<|im_start|>system\nYou are an agent" in text
