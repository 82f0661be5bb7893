"""Steering hooks: exactness, per-row alpha batching, positions under the KV cache, safety."""

import threading

import pytest
import torch

from empathy_core.core.generation import GenerationRequest, SharedGumbelSampler, side_by_side, stream_side_by_side
from empathy_core.core.prompts import render_prompt
from empathy_core.core.steering import as_alphas, steer, steering_vectors


def _request(h, scenario, alphas, layer, directions, **kw):
    return GenerationRequest(render_prompt(h.tokenizer, h.is_chat, scenario), tuple(alphas), layer, directions, **kw)


def _prompt(handle, n=12):
    g = torch.Generator().manual_seed(0)
    return torch.randint(8, len(handle.tokenizer), (1, n), generator=g)


def _vec(handle, layer=1, seed=1, scale=4.0):
    g = torch.Generator().manual_seed(seed)
    return {layer: torch.nn.functional.normalize(torch.randn(handle.hidden_size, generator=g), dim=0) * scale}


@torch.no_grad()
def _logits(handle, ids):
    return handle.model(input_ids=ids).logits


@torch.no_grad()
def gen(handle, ids, n=8, **kw):
    out = handle.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                                output_logits=True, return_dict_in_generate=True, pad_token_id=0, eos_token_id=None, **kw)
    return out.sequences[:, ids.shape[1]:], torch.stack(out.logits, 1)  # (B, n), (B, n, V)


def test_alpha_zero_is_bit_identical(tiny):
    ids = _prompt(tiny)
    base = _logits(tiny, ids)
    with steer(tiny, _vec(tiny), 0.0):
        same = _logits(tiny, ids)
    assert torch.equal(base, same)
    with steer(tiny, _vec(tiny), 3.0):
        moved = _logits(tiny, ids)
    assert not torch.allclose(base, moved)


def test_hooks_removed_after_exception(tiny):
    ids = _prompt(tiny)
    base = _logits(tiny, ids)
    hooks_before = [len(layer._forward_hooks) for layer in tiny.layers]
    with pytest.raises(RuntimeError, match="inside"):
        with steer(tiny, _vec(tiny), 5.0):
            _logits(tiny, ids)
            raise RuntimeError("failure inside the context")
    assert [len(layer._forward_hooks) for layer in tiny.layers] == hooks_before
    assert torch.equal(_logits(tiny, ids), base)
    assert tiny.lock.acquire(blocking=False)  # the lock was released too
    tiny.lock.release()


def test_hooks_removed_when_generate_raises(tiny):
    """A failure in the middle of generate, after the steering hook has run, still leaves no hook behind."""
    ids = _prompt(tiny)
    base = _logits(tiny, ids)
    hooks_before = [len(layer._forward_hooks) for layer in tiny.layers]

    class Boom(RuntimeError):
        pass

    passes = []

    def fail_on_the_second_pass(module, args, output):
        passes.append(1)
        if len(passes) == 2:
            raise Boom("inside generate")

    bomb = tiny.layers[-1].register_forward_hook(fail_on_the_second_pass)
    try:
        with pytest.raises(Boom):
            with steer(tiny, _vec(tiny), 5.0, record=True) as state:
                tiny.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                                    do_sample=False, pad_token_id=0)
    finally:
        bomb.remove()
    assert len(passes) == 2 and len(state.added) == 2  # the steering hook ran in both passes before the failure
    assert [len(layer._forward_hooks) for layer in tiny.layers] == hooks_before
    assert torch.equal(_logits(tiny, ids), base)
    assert tiny.lock.acquire(blocking=False)
    tiny.lock.release()


def test_per_row_alpha_batch_matches_separate_runs(tiny):
    ids = _prompt(tiny)
    alphas = [0.0, 2.0, -3.0, 6.0]
    vec = _vec(tiny)
    with steer(tiny, vec, alphas):
        toks_b, logits_b = gen(tiny, ids.repeat(len(alphas), 1), n=8)
    for i, a in enumerate(alphas):
        with steer(tiny, vec, a):
            toks_1, logits_1 = gen(tiny, ids, n=8)
        agree = int((toks_b[i] == toks_1[0]).cumprod(0).sum())
        assert (logits_b[i, : agree + 1] - logits_1[0, : agree + 1]).abs().max().item() <= 1e-4
        if agree < 8:  # a divergence is accepted only at a near-tie
            top2 = logits_1[0, agree].topk(2).values
            assert (top2[0] - top2[1]).item() < 1e-3


def test_generated_only_leaves_prompt_logits_unchanged(tiny):
    ids = _prompt(tiny)
    _, base_logits = gen(tiny, ids, n=4)
    with steer(tiny, _vec(tiny, scale=8.0), 1.0, positions="generated", prompt_len=ids.shape[1], record=True) as st:
        _, logits = gen(tiny, ids, n=4)
    # step 0's logits come from the prompt pass: unchanged; later steps see steered tokens
    assert torch.equal(logits[0, 0], base_logits[0, 0])
    assert not torch.allclose(logits[0, 1:], base_logits[0, 1:])
    prompt_pass, *decode = st.added
    assert prompt_pass[1:3] == (0, ids.shape[1]) and prompt_pass[3] == 0.0
    assert all(T == 1 and off >= ids.shape[1] and mx > 0 for _, off, T, mx in decode)


def test_prompt_only_adds_nothing_at_decode_steps(tiny):
    ids = _prompt(tiny)
    with steer(tiny, _vec(tiny, scale=8.0), 1.0, positions="prompt", record=True) as st:
        gen(tiny, ids, n=4)
    prompt_pass, *decode = st.added
    assert prompt_pass[3] > 0
    assert len(decode) == 3 and all(mx == 0.0 for *_, mx in decode)
    assert [off for _, off, _, _ in decode] == [ids.shape[1], ids.shape[1] + 1, ids.shape[1] + 2]


def test_positions_all_equals_no_cache_forward(tiny):
    """Under the KV cache, 'all' adds at every position: same logits as a cache-free forward."""
    ids = _prompt(tiny)
    vec = _vec(tiny)
    with steer(tiny, vec, 2.0):
        toks, logits = gen(tiny, ids, n=3)
        full = _logits(tiny, torch.cat([ids, toks[:, :2]], 1))
    torch.testing.assert_close(logits[0, 2], full[0, -1], atol=1e-4, rtol=1e-4)


def test_relative_alpha_scales_by_the_stored_norm(tiny):
    d = torch.nn.functional.normalize(torch.randn(tiny.hidden_size), dim=0)
    norms = torch.arange(1, tiny.n_layers + 1, dtype=torch.float32) * 10
    v = steering_vectors(tiny, {2: d}, "relative", norms)
    torch.testing.assert_close(v[2], d * 30.0)
    raw = steering_vectors(tiny, {2: d}, "raw")
    torch.testing.assert_close(raw[2], d)
    ids = _prompt(tiny)
    with steer(tiny, v, 0.5):
        a = _logits(tiny, ids)
    with steer(tiny, raw, 15.0):
        b = _logits(tiny, ids)
    torch.testing.assert_close(a, b)


def test_eight_threads_match_sequential_runs(tiny):
    ids = _prompt(tiny)
    vec = _vec(tiny)
    alphas = [0.0, 1.0, -1.0, 2.0, -2.0, 3.0, 4.0, -4.0]
    seq = {}
    for a in alphas:
        with steer(tiny, vec, a):
            seq[a] = gen(tiny, ids, n=6)[0]
    got, errors = {}, []

    def run(a):
        try:
            with steer(tiny, vec, a):
                got[a] = gen(tiny, ids, n=6)[0]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in alphas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(torch.equal(got[a], seq[a]) for a in alphas)


@pytest.mark.parametrize("bad,err", [(float("nan"), "finite"), (float("inf"), "finite"), ([], "at least one"),
                                     (1e9, "at most")])
def test_bad_alpha_is_a_clear_error(bad, err):
    with pytest.raises(ValueError, match=err):
        as_alphas(bad)


def test_wrong_width_and_unknown_layer(tiny):
    with pytest.raises(ValueError, match="width 7"):
        steering_vectors(tiny, {1: torch.randn(7)})
    with pytest.raises(ValueError, match="out of range"):
        steering_vectors(tiny, {99: torch.randn(tiny.hidden_size)})
    with pytest.raises(ValueError, match="NaN"):
        steering_vectors(tiny, {1: torch.full((tiny.hidden_size,), float("nan"))})
    with pytest.raises(ValueError, match="mean residual norm"):
        steering_vectors(tiny, {1: torch.randn(tiny.hidden_size)}, "relative")
    with pytest.raises(ValueError, match="positions"):
        with steer(tiny, _vec(tiny), 1.0, positions="middle"):
            pass


def test_side_by_side_rows_equal_single_runs(tiny_models):
    h = tiny_models["llama"]
    D = torch.nn.functional.normalize(torch.randn(h.n_layers, h.hidden_size), dim=1)
    norms = torch.full((h.n_layers,), 5.0)
    both = side_by_side(h, _request(h, "maze", [0.0, 1.5], 1, D, mean_norms=norms, max_new_tokens=10))
    for row in both.rows:
        alone = side_by_side(h, _request(h, "maze", [row.alpha], 1, D, mean_norms=norms, max_new_tokens=10))
        assert alone.rows[0].token_ids == row.token_ids
    assert both.rows[0].token_ids != both.rows[1].token_ids
    assert len(both.rows[0].token_scores) >= len(both.rows[0].token_ids) - 1


def test_shared_seed_sampling_makes_alpha_the_only_difference(tiny_models):
    h = tiny_models["llama"]
    D = torch.nn.functional.normalize(torch.randn(h.n_layers, h.hidden_size), dim=1)
    kw = dict(mean_norms=torch.full((h.n_layers,), 5.0), max_new_tokens=12, greedy=False, seed=3, temperature=1.0)
    both = side_by_side(h, _request(h, "duel", [0.0, 0.0, 2.0], 1, D, **kw))
    assert both.rows[0].token_ids == both.rows[1].token_ids  # same alpha, same seed: same sample
    alone = side_by_side(h, _request(h, "duel", [2.0], 1, D, **kw))
    assert alone.rows[0].token_ids == both.rows[2].token_ids
    other_seed = side_by_side(h, _request(h, "duel", [0.0], 1, D, **{**kw, "seed": 4}))
    assert other_seed.rows[0].token_ids != both.rows[0].token_ids


def test_gumbel_sampler_draws_from_the_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    s = SharedGumbelSampler(seed=0, temperature=1.0, top_p=1.0)
    counts = torch.zeros(4)
    for _ in range(4000):
        counts[s(None, logits).argmax()] += 1
    torch.testing.assert_close(counts / 4000, logits.softmax(-1)[0], atol=0.03, rtol=0)


def test_max_new_tokens_is_capped(tiny_models):
    h = tiny_models["llama"]
    D = torch.randn(h.n_layers, h.hidden_size)
    with pytest.raises(ValueError, match="max_new_tokens"):
        side_by_side(h, _request(h, "maze", [0.0], 1, D, mean_norms=torch.ones(h.n_layers), max_new_tokens=257))


def test_stream_yields_growing_rows(tiny_models):
    h = tiny_models["qwen2"]
    D = torch.nn.functional.normalize(torch.randn(h.n_layers, h.hidden_size), dim=1)
    lengths = [[len(r.token_ids) for r in s.rows] for s in
               stream_side_by_side(h, _request(h, "protector", [0.0, 1.0], 2, D, mean_norms=torch.ones(h.n_layers),
                                               max_new_tokens=6))]
    assert len(lengths) >= 2 and lengths[0] <= lengths[-1]


def _linear_pair(out_features=40, in_features=24, bias=True):
    torch.manual_seed(0)
    lin = torch.nn.Linear(in_features, out_features, bias=bias)
    ref = torch.nn.Linear(in_features, out_features, bias=bias)
    ref.load_state_dict(lin.state_dict())
    return lin, ref


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 7, 64, 65])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_matches_stock_linear(rows, bias):
    from empathy_core.core.fast_linear import packed_bytes, packed_linear_available, use_packed_linear

    if not packed_linear_available():
        pytest.skip("this torch build has no oneDNN linear kernels")
    lin, ref = _linear_pair(bias=bias)
    seq = torch.nn.Sequential(lin)
    assert use_packed_linear(seq) == 1
    x = torch.randn(rows, 1, 24)
    with torch.inference_mode():
        got, want = lin(x), ref(x)
    if 4 <= rows <= 64:  # a decode step the packed path takes: equal up to float rounding
        assert packed_bytes(seq) > 0
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    else:  # one to three rows, or more than 64: the stock kernel, bit for bit
        assert packed_bytes(seq) == 0 and torch.equal(got, want)


def test_packed_linear_leaves_other_shapes_and_autograd_on_the_stock_path():
    from empathy_core.core.fast_linear import packed_bytes, use_packed_linear

    lin, ref = _linear_pair()
    seq = torch.nn.Sequential(lin)
    use_packed_linear(seq)
    prompt = torch.randn(1, 9, 24)  # a prompt's forward pass: several positions in one row
    flat = torch.randn(7, 24)  # not a decode step's (rows, 1, hidden)
    with torch.inference_mode():
        assert torch.equal(lin(prompt), ref(prompt)) and torch.equal(lin(flat), ref(flat))
    x = torch.randn(7, 1, 24)
    assert torch.equal(lin(x), ref(x))  # autograd on: stock, so gradients still flow
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(lin(x), ref(x))  # under autocast: the stock (autocast) path
    assert packed_bytes(seq) == 0


def test_packed_linear_follows_a_changed_weight_and_stays_stock_when_memory_is_short(monkeypatch):
    from empathy_core.core import fast_linear

    lin, ref = _linear_pair()
    seq = torch.nn.Sequential(lin)
    fast_linear.use_packed_linear(seq)
    x = torch.randn(5, 1, 24)
    with torch.inference_mode():
        lin(x)
    with torch.no_grad():
        lin.weight.mul_(2.0)
        ref.weight.mul_(2.0)
    with torch.inference_mode():
        torch.testing.assert_close(lin(x), ref(x), atol=1e-5, rtol=1e-5)  # packed again from the new weight
    fast_linear.use_stock_linear(seq)
    assert fast_linear.packed_bytes(seq) == 0
    fast_linear.use_packed_linear(seq)
    monkeypatch.setattr(fast_linear, "available_cpu_bytes", lambda: 0)
    with torch.inference_mode():
        assert torch.equal(lin(x), ref(x))
    assert fast_linear.packed_bytes(seq) == 0
    monkeypatch.setattr(fast_linear, "available_cpu_bytes", lambda: 1 << 50)  # memory is free again
    with torch.inference_mode():
        lin(x)
    assert fast_linear.packed_bytes(seq) == 0  # not asked again before RETRY_SECONDS
    monkeypatch.setattr(fast_linear, "RETRY_SECONDS", 0.0)
    with torch.inference_mode():
        torch.testing.assert_close(lin(x), ref(x), atol=1e-5, rtol=1e-5)
    assert fast_linear.packed_bytes(seq) > 0


def test_packed_linear_frees_a_dropped_model_without_gc_and_skips_inference_weights():
    import gc
    import weakref

    from empathy_core.core.fast_linear import packed_bytes, use_packed_linear

    lin, _ = _linear_pair()
    use_packed_linear(torch.nn.Sequential(lin))
    dead = weakref.ref(lin)
    gc.disable()
    try:
        del lin
        assert dead() is None  # no reference cycle through the patched forward
    finally:
        gc.enable()
    with torch.inference_mode():
        made_inside = torch.nn.Linear(24, 40)  # its weight is an inference tensor: no version counter
        ref = torch.nn.Linear(24, 40)
        ref.load_state_dict(made_inside.state_dict())
    seq = torch.nn.Sequential(made_inside)
    use_packed_linear(seq)
    x = torch.randn(5, 1, 24)
    with torch.inference_mode():
        assert torch.equal(made_inside(x), ref(x))  # the stock path, no error
    assert packed_bytes(seq) == 0


@pytest.mark.parametrize("value, wanted", [(None, True), ("1", True), ("0", False), ("yes", None)])
def test_packed_linear_switch(monkeypatch, value, wanted):
    from empathy_core.core.fast_linear import packed_linear_wanted

    if value is None:
        monkeypatch.delenv("EMPATHY_PACKED_LINEAR", raising=False)
    else:
        monkeypatch.setenv("EMPATHY_PACKED_LINEAR", value)
    if wanted is None:
        with pytest.raises(ValueError, match="EMPATHY_PACKED_LINEAR"):
            packed_linear_wanted()
    else:
        assert packed_linear_wanted() is wanted


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_packed_linear_keeps_steering_exact_in_a_strip(tiny_models, arch):
    """Seven rows (the dose-response strip) decode through the packed path; each row still equals the same
    alpha run alone on the stock path (tokens, and logits within 1e-4), and alpha = 0 with and without the
    hooks is bit-identical on the packed path too."""
    from empathy_core.core.fast_linear import packed_bytes, packed_linear_available, use_packed_linear, use_stock_linear
    from empathy_core.testing import tiny_model

    if not packed_linear_available():
        pytest.skip("this torch build has no oneDNN linear kernels")
    h = tiny_model(arch, tokenizer=tiny_models[arch].tokenizer, seed=5)
    ids = _prompt(h)
    alphas = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    vec = _vec(h)
    use_packed_linear(h.model)
    try:
        with steer(h, vec, alphas):
            toks_b, logits_b = gen(h, ids.repeat(7, 1), n=6)
        with steer(h, vec, 0.0):
            toks_z, logits_z = gen(h, ids.repeat(7, 1), n=6)
        toks_p, logits_p = gen(h, ids.repeat(7, 1), n=6)
        assert packed_bytes(h.model) > 0
        assert torch.equal(logits_z, logits_p) and torch.equal(toks_z, toks_p)
    finally:
        use_stock_linear(h.model)
    for i, a in enumerate(alphas):
        with steer(h, vec, a):
            toks_1, logits_1 = gen(h, ids, n=6)
        assert torch.equal(toks_b[i], toks_1[0])
        assert (logits_b[i] - logits_1[0]).abs().max().item() <= 1e-4


def test_per_row_vectors_match_separate_runs(tiny):
    ids = _prompt(tiny)
    v1, v2 = _vec(tiny, seed=1)[1], _vec(tiny, seed=2)[1]
    with steer(tiny, {1: torch.stack([v1, v2])}, [1.0, 2.0]):
        both = _logits(tiny, ids.repeat(2, 1))
    with steer(tiny, {1: v1}, 1.0):
        one = _logits(tiny, ids)
    with steer(tiny, {1: v2}, 2.0):
        two = _logits(tiny, ids)
    torch.testing.assert_close(both[0], one[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(both[1], two[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("k", [2, 5, 512])
def test_top_p_fast_path_matches_a_full_sort(k):
    torch.manual_seed(0)
    s = SharedGumbelSampler(seed=0, temperature=1.0, top_p=0.9)
    scores = torch.randn(4, 300) * 3
    probs = scores.softmax(-1)
    sp, si = probs.sort(dim=-1, descending=True)
    want = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, si, sp.cumsum(-1) - sp > 0.9)
    assert torch.equal(s._top_p_drop(scores, k=k), want)
