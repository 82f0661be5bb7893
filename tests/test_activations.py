"""Hook reads, pooling and batching, checked against output_hidden_states on tiny models."""

import pytest
import torch

from empathy_core.core.activations import (
    encode,
    extract,
    extract_multi,
    pool_weights,
    score_tokens,
    tap_layers,
    tokenize_one,
)
from empathy_core.core.models import find_final_norm
from empathy_core.study import dataset

TEXTS = [p.empathic for p in dataset.load_pairs()[:5]] + [p.task for p in dataset.load_pairs()[:5]]
SCEN = [p.scenario for p in dataset.load_pairs()[:5]] * 2


def _hook_reads(handle, text):
    ids, mask = tokenize_one(handle, text, "mean")
    enc = encode(handle, [(ids, mask)])
    caps = {}
    with tap_layers(handle, lambda L, h: caps.__setitem__(L, h.clone())):
        out = handle.model(input_ids=enc.input_ids, output_hidden_states=True)
    return caps, out.hidden_states


@torch.no_grad()
def test_hook_reads_equal_hidden_states(tiny):
    caps, hs = _hook_reads(tiny, TEXTS[0])
    n = tiny.n_layers
    assert len(hs) == n + 1
    for L in range(n - 1):
        torch.testing.assert_close(caps[L], hs[L + 1], rtol=0, atol=0)
    # The last entry of hidden_states has the final norm applied: it is not block n-1's output.
    assert not torch.allclose(caps[n - 1], hs[n])
    torch.testing.assert_close(find_final_norm(tiny.model)(caps[n - 1]), hs[n])


@torch.no_grad()
def test_layer_discovery_gpt2(tiny_models):
    g = tiny_models["gpt2"]
    caps, hs = _hook_reads(g, TEXTS[0])
    for L in range(g.n_layers - 1):
        torch.testing.assert_close(caps[L], hs[L + 1], rtol=0, atol=0)


@pytest.mark.parametrize("pooling", ["mean", "last", "chat"])
def test_batched_equals_one_at_a_time(tiny, pooling):
    batched = extract(tiny, TEXTS, pooling=pooling, scenarios=SCEN, batch_size=4)
    single = [extract(tiny, [t], pooling=pooling, scenarios=[s], batch_size=1) for t, s in zip(TEXTS, SCEN)]
    for i, one in enumerate(single):
        assert (batched.pooled[i] - one.pooled[0]).abs().max().item() <= 1e-4
        assert (batched.token_norm[i] - one.token_norm[0]).abs().max().item() <= 1e-3


@torch.no_grad()
def test_mean_pooling_matches_a_manual_mean(tiny):
    text = TEXTS[1]
    ids, mask = tokenize_one(tiny, text, "mean")
    assert ids[0] == tiny.tokenizer.bos_token_id and not mask[0]  # BOS kept as input, excluded from pooling
    _, hs = _hook_reads(tiny, text)
    want = hs[2][0][torch.tensor(mask)].mean(0)
    got = extract(tiny, [text]).pooled[0, 1]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_chat_pooling_covers_only_the_reply(tiny):
    text = TEXTS[2]
    ids, mask = tokenize_one(tiny, text, "chat", scenario=SCEN[2])
    kept = tiny.tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert kept.split() == tiny.tokenizer.decode(tiny.tokenizer(text, add_special_tokens=False)["input_ids"]).split()
    assert len(ids) > sum(mask) + 10  # the scenario prompt is there, but not pooled


def test_last_token_weights():
    m = torch.tensor([[False, True, True, False], [False, True, True, True]])
    w = pool_weights(m, "last")
    assert w.tolist() == [[0, 0, 1, 0], [0, 0, 0, 1]]


def test_token_scores_pool_to_layer_scores(tiny):
    D = torch.nn.functional.normalize(torch.randn(tiny.n_layers, tiny.hidden_size), dim=1)
    ts = score_tokens(tiny, TEXTS[3], D)
    pooled = extract(tiny, [TEXTS[3]]).pooled[0]
    torch.testing.assert_close(ts.per_layer, (pooled * D).sum(-1), atol=1e-4, rtol=1e-4)
    assert ts.per_token.shape == (tiny.n_layers, len(ts.tokens))
    torch.testing.assert_close(ts.per_token.mean(1), ts.per_layer, atol=1e-4, rtol=1e-4)


def test_hooks_are_removed_after_an_exception(tiny):
    before = [dict(layer._forward_hooks) for layer in tiny.layers]  # transformers may keep its own
    with pytest.raises(RuntimeError):
        with tap_layers(tiny, lambda L, h: None):
            assert all(len(layer._forward_hooks) == len(b) + 1 for layer, b in zip(tiny.layers, before))
            raise RuntimeError("boom")
    assert [dict(layer._forward_hooks) for layer in tiny.layers] == before


@pytest.mark.parametrize("bad,msg", [("", "empty"), ("   ", "empty")])
def test_empty_text_is_a_clear_error(tiny, bad, msg):
    with pytest.raises(ValueError, match=msg):
        extract(tiny, [bad])


def test_chat_pooling_needs_scenarios(tiny):
    with pytest.raises(ValueError, match="scenario"):
        extract(tiny, TEXTS[:2], pooling="chat")


def test_too_long_text_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="tokens long"):
        extract(tiny, ["door " * 2000])


def test_bfloat16_autocast_reads_float32_states_close_to_the_float32_pass(tiny):
    texts = ["I stopped to help her before the timer ran out.", "Keep walking, the exit is close.", "ok"]
    w0 = next(tiny.model.parameters()).clone()
    full = extract_multi(tiny, texts, ("mean", "last"))
    half = extract_multi(tiny, texts, ("mean", "last"), autocast=torch.bfloat16)
    for p in ("mean", "last"):
        a, b = full[p].pooled, half[p].pooled
        assert b.dtype == torch.float32 and a.shape == b.shape
        assert not torch.equal(a, b)  # the matmuls did run in bfloat16
        rel = (a - b).norm(dim=-1) / a.norm(dim=-1).clamp_min(1e-6)
        assert float(rel.max()) < 0.05
    # the weights are untouched, and a pass without autocast is float32 again, bit for bit
    assert next(tiny.model.parameters()).dtype == torch.float32 and torch.equal(next(tiny.model.parameters()), w0)
    assert torch.equal(extract_multi(tiny, texts, ("mean",))["mean"].pooled, full["mean"].pooled)


@torch.no_grad()
def test_bfloat16_autocast_pools_the_states_in_float32(tiny):
    # under autocast the block outputs (the float32 residual stream) are pooled in float32, not in bfloat16: the same
    # numbers as a float32 mean of the states read by output_hidden_states under the same autocast
    text = TEXTS[1]
    ids, mask = tokenize_one(tiny, text, "mean")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hs = tiny.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    got = extract_multi(tiny, [text], ("mean",), autocast=torch.bfloat16)["mean"].pooled[0]
    for L in range(tiny.n_layers - 1):
        assert hs[L + 1].dtype == torch.float32
        want = hs[L + 1][0][torch.tensor(mask)].float().mean(0)
        torch.testing.assert_close(got[L], want, atol=1e-5, rtol=1e-5)
