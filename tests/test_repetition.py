"""The repetition guard: one rule for every row, generated tokens only, α = 0 still exact."""

import pytest
import torch
from transformers import LogitsProcessorList

from empathy_core.core.generation import GenerationRequest, RepetitionGuard, side_by_side
from empathy_core.core.prompts import render_prompt


def _request(h, scenario, alphas, layer, directions, **kw):
    return GenerationRequest(render_prompt(h.tokenizer, h.is_chat, scenario), tuple(alphas), layer, directions, **kw)


def test_penalty_divides_positive_and_multiplies_negative_logits_of_generated_tokens():
    ids = torch.tensor([[5, 6, 7, 1, 2], [5, 6, 7, 3, 3]])  # prompt_len 3: the prompt tokens 5, 6, 7 are not penalised
    scores = torch.tensor([[2.0, -2.0, 4.0, 1.0, 1.0, 3.0, 3.0, 3.0]] * 2)
    out = RepetitionGuard(3, penalty=2.0)(ids, scores)
    assert out[0].tolist() == [2.0, -4.0, 2.0, 1.0, 1.0, 3.0, 3.0, 3.0]
    assert out[1].tolist() == [2.0, -2.0, 4.0, 0.5, 1.0, 3.0, 3.0, 3.0]
    assert scores[0, 1] == -2.0  # the input is not modified in place


def test_no_repeat_ngram_bans_only_the_token_that_would_repeat_an_ngram():
    ids = torch.tensor([[9, 1, 2, 3, 1, 2]])  # generated: 1 2 3 1 2; the 3-gram "1 2 3" would repeat
    out = RepetitionGuard(1, no_repeat_ngram=3)(ids, torch.zeros(1, 10))
    assert torch.isinf(out[0, 3]) and out[0, 3] < 0
    assert torch.isfinite(out[0, [0, 1, 2, 4, 5, 6, 7, 8, 9]]).all()


@pytest.mark.parametrize("kw", [{"penalty": 0.9}, {"penalty": 3.0}, {"no_repeat_ngram": 1}, {"no_repeat_ngram": -2}])
def test_bad_settings_are_clear_errors(kw):
    with pytest.raises(ValueError):
        RepetitionGuard(0, **kw)


def test_alpha_zero_row_equals_plain_generate_with_the_same_guard(tiny_models):
    h = tiny_models["llama"]
    D = torch.nn.functional.normalize(torch.randn(h.n_layers, h.hidden_size, generator=torch.Generator().manual_seed(0)), dim=1)
    res = side_by_side(h, _request(h, "maze", [0.0, 2.0], 1, D, mean_norms=torch.ones(h.n_layers), max_new_tokens=12,
                                   repetition_penalty=1.3, no_repeat_ngram=3))
    prompt = render_prompt(h.tokenizer, h.is_chat, "maze")
    ids = h.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    guard = LogitsProcessorList([RepetitionGuard(ids.shape[1], 1.3, 3)])
    with torch.no_grad():
        plain = h.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                 logits_processor=guard, pad_token_id=h.tokenizer.pad_token_id,
                                 eos_token_id=h.tokenizer.eos_token_id, temperature=None, top_p=None, top_k=None)
    want = [t for t in plain[0, ids.shape[1]:].tolist() if t != h.tokenizer.eos_token_id]
    assert res.rows[0].token_ids == want[: len(res.rows[0].token_ids)] and res.rows[0].token_ids
    alone = side_by_side(h, _request(h, "maze", [2.0], 1, D, mean_norms=torch.ones(h.n_layers), max_new_tokens=12,
                                     repetition_penalty=1.3, no_repeat_ngram=3))
    assert alone.rows[0].token_ids == res.rows[1].token_ids  # the guard is per row: batching changes nothing


def test_guard_changes_a_looping_greedy_reply(tiny_models):
    """A random-init model loops under greedy decoding; the guard breaks the loop."""
    h = tiny_models["llama"]
    D = torch.zeros(h.n_layers, h.hidden_size)
    off = side_by_side(h, _request(h, "duel", [0.0], 1, D, unit="raw", max_new_tokens=40, min_new_tokens=40))
    on = side_by_side(h, _request(h, "duel", [0.0], 1, D, unit="raw", max_new_tokens=40, min_new_tokens=40,
                                  no_repeat_ngram=3))
    grams = lambda t: [tuple(t[i:i + 3]) for i in range(len(t) - 2)]  # noqa: E731
    assert len(set(grams(on.rows[0].token_ids))) == len(grams(on.rows[0].token_ids))
    assert len(set(grams(off.rows[0].token_ids))) < len(grams(off.rows[0].token_ids))
