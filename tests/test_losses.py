"""rlhfkit.losses against hand-computed values, plain loops and exact expectations.

Run: .venv/bin/python -m pytest tests/test_losses.py -q
"""

import itertools
import math

import pytest
import torch

from rlhfkit import losses as L


def softplus(x: float) -> float:
    """-log σ(x) is softplus(-x) = log(1 + e^{-x}); written out for hand-computed expectations."""
    return math.log1p(math.exp(x))


# ---------------------------------------------------------------------------------------------- masked helpers


def test_masked_mean_ignores_masked_values_and_empty_mask_is_zero():
    x = torch.tensor([[1.0, 2.0, 1000.0], [3.0, -1000.0, 5.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    assert L.masked_mean(x, mask).item() == pytest.approx((1 + 2 + 3 + 5) / 4)
    assert L.masked_mean(x, mask, dim=-1).tolist() == pytest.approx([1.5, 4.0])
    assert L.masked_mean(x, torch.zeros_like(mask)).item() == 0.0


def test_masked_whiten_zero_mean_unit_std_and_guards():
    torch.manual_seed(0)
    x = torch.randn(4, 7) * 3 + 2
    mask = (torch.rand(4, 7) > 0.3).float()
    w = L.masked_whiten(x, mask)
    sel = w[mask.bool()]
    assert sel.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert sel.std().item() == pytest.approx(1.0, abs=1e-5)
    assert (w[~mask.bool()] == 0).all()
    # shift_mean=False keeps the mean, only rescales
    kept = L.masked_whiten(x, mask, shift_mean=False)[mask.bool()]
    assert kept.mean().item() == pytest.approx(x[mask.bool()].mean().item(), abs=1e-5)
    # one element, or all equal: no division by ~0, no NaN
    one = torch.zeros(2, 3)
    one[1, 2] = 1
    assert torch.equal(L.masked_whiten(torch.full((2, 3), 5.0), one), torch.zeros(2, 3))
    const = L.masked_whiten(torch.full((2, 3), 0.1), torch.ones(2, 3))
    assert torch.isfinite(const).all() and const.abs().max() < 1e-6


def test_aggregate_token_vs_seq_levels():
    per_tok = torch.tensor([[1.0, 0.0, 0.0], [2.0, 4.0, 6.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    assert L.aggregate(per_tok, mask, "token").item() == pytest.approx((1 + 2 + 4 + 6) / 4)
    assert L.aggregate(per_tok, mask, "seq").item() == pytest.approx((1 + 4) / 2)
    with pytest.raises(ValueError):
        L.aggregate(per_tok, mask, "sentence")


# ---------------------------------------------------------------------------------------------- LM


def test_token_logprobs_alignment_and_temperature():
    torch.manual_seed(0)
    B, T, V = 2, 5, 7
    logits, ids = torch.randn(B, T, V), torch.randint(0, V, (B, T))
    for tau in (1.0, 0.7):
        out = L.token_logprobs(logits, ids, temperature=tau)
        assert out.shape == (B, T)
        for b in range(B):
            assert out[b, 0] == 0  # nothing predicts the first token
            for t in range(1, T):
                ref = torch.log_softmax(logits[b, t - 1] / tau, -1)[ids[b, t]]
                assert out[b, t].item() == pytest.approx(ref.item(), abs=1e-5)


def test_lm_loss_is_mean_nll_over_target_tokens():
    torch.manual_seed(1)
    logits, labels = torch.randn(3, 6, 11), torch.randint(0, 11, (3, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]])
    nll = [
        -torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]].item()
        for b in range(3)
        for t in range(1, 6)
        if mask[b, t]
    ]
    assert L.lm_loss(logits, labels, mask).item() == pytest.approx(sum(nll) / len(nll), abs=1e-5)
    # mask[:, 0] is ignored: the first token is never a target
    mask0 = mask.clone()
    mask0[:, 0] = 0
    assert L.lm_loss(logits, labels, mask0).item() == pytest.approx(sum(nll) / len(nll), abs=1e-5)


def test_lm_loss_grad_accumulation_1x4_equals_4x1():
    """Invariant (TRL tests/invariant style): 4 micro-batches of 1, each loss / 4, give the full-batch gradient."""
    torch.manual_seed(0)
    V, T = 13, 6
    model = torch.nn.Sequential(torch.nn.Embedding(V, 8), torch.nn.Tanh(), torch.nn.Linear(8, V))
    ids = torch.randint(0, V, (4, T))
    mask = torch.ones(4, T)

    model.zero_grad()
    L.lm_loss(model(ids), ids, mask).backward()
    full = [p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    for i in range(4):
        (L.lm_loss(model(ids[i : i + 1]), ids[i : i + 1], mask[i : i + 1]) / 4).backward()
    for g_full, p in zip(full, model.parameters()):
        torch.testing.assert_close(p.grad, g_full, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- reward model


def test_bradley_terry_hand_values_margin_and_weights():
    r_w, r_l = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])
    # -log σ(1) = log(1 + e^-1), -log σ(0) = log 2, -log σ(-1) = log(1 + e)
    a, b, c = softplus(-1), math.log(2), softplus(1)
    assert L.bradley_terry(r_w, r_l).item() == pytest.approx((a + b + c) / 3, abs=1e-6)
    assert L.bradley_terry(r_w, r_l, weight=torch.ones(3)).item() == pytest.approx((a + b + c) / 3, abs=1e-6)
    assert L.bradley_terry(r_w, r_l, weight=torch.tensor([3.0, 1.0, 0.0])).item() == pytest.approx(
        (3 * a + b) / 4, abs=1e-6
    )
    # margin 1 on the first pair turns its d = 1 into d = 0
    assert L.bradley_terry(r_w, r_l, margin=torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(
        (math.log(2) + b + c) / 3, abs=1e-6
    )


def test_center_rewards_hand_value():
    assert L.center_rewards(torch.tensor([1.0, -2.0]), torch.tensor([1.0, 0.5])).item() == pytest.approx(
        (4 + 2.25) / 2
    )


def test_ranking_pairs_expands_k_way_with_ties():
    pairs, tie = L.ranking_pairs([2, [0, 3], 1])
    assert pairs.tolist() == [[2, 0], [2, 3], [2, 1], [0, 3], [0, 1], [3, 1]]
    assert tie.tolist() == [False, False, False, True, False, False]
    for k in range(2, 10):
        assert len(L.ranking_pairs(list(range(k)))[0]) == math.comb(k, 2)


def test_ranking_loss_hand_example_per_prompt_average_and_tie():
    # prompt 0: responses 0,1,2 ranked 0 > 1 > 2 with scores 2, 1, 0 -> d = 1, 2, 1
    # prompt 1: responses 3,4 tied with scores 0.5, 0.5 -> d = 0, tie loss -½(log σ(0) + log σ(0)) = log 2
    scores = torch.tensor([2.0, 1.0, 0.0, 0.5, 0.5])
    p0, t0 = L.ranking_pairs([0, 1, 2])
    p1, t1 = L.ranking_pairs([[3, 4]])
    pairs, tie = torch.cat([p0, p1]), torch.cat([t0, t1])
    prompt_index = torch.tensor([0, 0, 0, 1])
    prompt0 = (softplus(-1) + softplus(-2) + softplus(-1)) / 3
    expected = (prompt0 + math.log(2)) / 2  # prompts count equally, not 3:1 by their pair counts
    assert L.ranking_loss(scores, pairs, prompt_index, tie=tie).item() == pytest.approx(expected, abs=1e-6)
    flat = (3 * prompt0 + math.log(2)) / 4
    assert expected != pytest.approx(flat)
    # all-ones weights == no weights; a prompt-wide weight w scales that prompt's share
    ones = L.ranking_loss(scores, pairs, prompt_index, weights=torch.ones(4), tie=tie)
    assert ones.item() == pytest.approx(expected, abs=1e-6)
    w = torch.tensor([3.0, 3.0, 3.0, 1.0])
    weighted = (3 * prompt0 + 1 * math.log(2)) / 4
    assert L.ranking_loss(scores, pairs, prompt_index, weights=w, tie=tie).item() == pytest.approx(weighted, abs=1e-6)


def test_ranking_loss_tie_is_symmetric_and_minimised_at_equal_scores():
    s = torch.tensor([0.0, 0.0], requires_grad=True)
    pairs, tie = torch.tensor([[0, 1]]), torch.tensor([True])
    loss = L.ranking_loss(s, pairs, torch.tensor([0]), tie=tie)
    loss.backward()
    assert s.grad.abs().max() < 1e-7
    s2 = torch.tensor([1.5, -0.3])
    swapped = torch.tensor([[1, 0]])
    assert L.ranking_loss(s2, pairs, torch.tensor([0]), tie=tie).item() == pytest.approx(
        L.ranking_loss(s2, swapped, torch.tensor([0]), tie=tie).item()
    )


def test_ranking_loss_k2_equals_bradley_terry():
    torch.manual_seed(0)
    scores = torch.randn(10)
    pairs = torch.arange(10).view(5, 2)
    bt = L.bradley_terry(scores[pairs[:, 0]], scores[pairs[:, 1]])
    assert L.ranking_loss(scores, pairs, torch.arange(5)).item() == pytest.approx(bt.item(), abs=1e-6)


def test_plackett_luce_hand_value_normalised_and_k2_is_bt():
    s = torch.tensor([0.3, 1.2, -0.5])
    e = [math.exp(v) for v in s.tolist()]
    # ranking 1 > 0 > 2: P = e1/(e0+e1+e2) * e0/(e0+e2)
    expected = -math.log(e[1] / sum(e) * e[0] / (e[0] + e[2]))
    assert L.plackett_luce(s, [1, 0, 2]).item() == pytest.approx(expected, abs=1e-6)
    total = sum(math.exp(-L.plackett_luce(s, list(p)).item()) for p in itertools.permutations(range(3)))
    assert total == pytest.approx(1.0, abs=1e-6)
    two = torch.tensor([0.4, -1.0])
    assert L.plackett_luce(two, [0, 1]).item() == pytest.approx(
        L.bradley_terry(two[:1], two[1:]).item(), abs=1e-6
    )


# ---------------------------------------------------------------------------------------------- DPO family


def test_dpo_sigmoid_hand_value_label_smoothing_and_rewards():
    # log-ratio chosen = +1, rejected = -1 -> h = 2; β = 0.5 -> βh = 1
    pi_w, ref_w = torch.tensor([-3.0]), torch.tensor([-4.0])
    pi_l, ref_l = torch.tensor([-6.0]), torch.tensor([-5.0])
    loss, cr, rr = L.dpo_sigmoid(pi_w, pi_l, ref_w, ref_l, beta=0.5)
    assert loss.item() == pytest.approx(softplus(-1), abs=1e-6)
    assert cr.tolist() == pytest.approx([0.5]) and rr.tolist() == pytest.approx([-0.5])
    cdpo, _, _ = L.dpo_sigmoid(pi_w, pi_l, ref_w, ref_l, beta=0.5, label_smoothing=0.1)
    assert cdpo.item() == pytest.approx(0.9 * softplus(-1) + 0.1 * softplus(1), abs=1e-6)


def test_ipo_hand_value():
    pi_w, ref_w, pi_l, ref_l = (torch.tensor([v]) for v in (-3.0, -4.0, -6.0, -5.0))  # h = 2
    loss, _, _ = L.ipo(pi_w, pi_l, ref_w, ref_l, beta=0.5)  # target 1/(2β) = 1 -> (2 - 1)^2
    assert loss.item() == pytest.approx(1.0)
    loss, _, _ = L.ipo(pi_w, pi_l, ref_w, ref_l, beta=0.25)  # target 2 -> 0
    assert loss.item() == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------- PPO


def test_ppo_clip_hand_made_tokens():
    lr = math.log(1.5)
    lo = math.log(0.5)
    old = torch.zeros(1, 5)
    logp = torch.tensor([[lr, lr, lo, lo, 3.0]], requires_grad=True)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    loss, clipfrac, approx_kl = L.ppo_clip(logp, old, adv, mask, clip=0.2)
    # per token max(-Aρ, -A clip(ρ)): ρ=1.5,A=+1 -> -1.2 (clipped); ρ=1.5,A=-1 -> 1.5; ρ=.5,A=+1 -> -0.5;
    # ρ=.5,A=-1 -> 0.8 (clipped); the fifth token is masked out
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 0.5 + 0.8) / 4, abs=1e-6)
    assert clipfrac.item() == pytest.approx(0.5)
    assert approx_kl.item() == pytest.approx(0.5 * (2 * lr**2 + 2 * lo**2) / 4, abs=1e-6)
    loss.backward()
    # clipped tokens pass no gradient; unclipped ones get -A ρ / n
    assert logp.grad.tolist()[0] == pytest.approx([0.0, 1.5 / 4, -0.5 / 4, 0.0, 0.0], abs=1e-6)


def test_value_clip_hand_made():
    old = torch.zeros(1, 3)
    values = torch.tensor([[1.0, 0.1, 9.0]])
    returns = torch.tensor([[1.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, clipfrac = L.value_clip(values, old, returns, mask, clip=0.2)
    # token 0: unclipped 0, clipped V=0.2 -> 0.64; token 1: both (0.9)^2 = 0.81
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2, abs=1e-6)
    assert clipfrac.item() == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------- KL estimators


def _two_categoricals(seed: int, k: int = 6):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), 0)
    q = torch.softmax(torch.randn(k, generator=g, dtype=torch.float64) * 0.7, 0)
    return p, q


def test_k1_k3_expectations_equal_exact_kl():
    for seed in range(3):
        p, q = _two_categoricals(seed)
        exact = (p * (p / q).log()).sum().item()
        logp, logq = p.log(), q.log()
        assert (p * L.kl_k1(logp, logq)).sum().item() == pytest.approx(exact, rel=1e-10)
        assert (p * L.kl_k3(logp, logq)).sum().item() == pytest.approx(exact, rel=1e-10)
        assert (L.kl_k2(logp, logq) >= 0).all() and (L.kl_k3(logp, logq) >= 0).all()


def test_k3_sample_mean_close_to_exact_kl():
    p, q = _two_categoricals(7)
    exact = (p * (p / q).log()).sum().item()
    g = torch.Generator().manual_seed(0)
    y = torch.multinomial(p, 200_000, replacement=True, generator=g)
    k3 = L.kl_k3(p.log()[y], q.log()[y])
    stderr = k3.std().item() / math.sqrt(len(y))
    assert abs(k3.mean().item() - exact) < 4 * stderr
    # k2 is biased but, for nearby distributions, close to second order
    p2 = torch.softmax(p.log() + 0.05 * torch.randn(6, generator=g, dtype=torch.float64), 0)
    near = (p2 * (p2 / p).log()).sum().item()
    assert (p2 * L.kl_k2(p2.log(), p.log())).sum().item() == pytest.approx(near, rel=0.05)


# ---------------------------------------------------------------------------------------------- GRPO / RLOO loss


def test_grpo_loss_seq_vs_token_level_gradients():
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    adv = torch.tensor([1.0, 1.0])
    loss, clipfrac, kl = L.grpo_loss(logp, logp.detach(), adv, mask, level="seq")
    assert loss.item() == pytest.approx(-1.0) and clipfrac.item() == 0.0 and kl.item() == 0.0
    loss.backward()  # REINFORCE: -A / len per token, then mean over the 2 responses
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5, 0, 0], [-1 / 6, -1 / 6, -1 / 6]]))
    logp.grad = None
    L.grpo_loss(logp, logp.detach(), adv, mask, level="token")[0].backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.25, 0, 0], [-0.25, -0.25, -0.25]]))


def _grpo_loop(logp, old, adv, mask, clip=0.2, clip_high=None, ref=None, kl_coef=0.0, level="seq"):
    """Plain-Python GRPO objective, token by token (Shao et al. 2024 eq. 3), written from the paper rather than
    from `losses`: returns (loss, mean k3 over the masked tokens)."""
    hi = clip if clip_high is None else clip_high
    per_seq, flat, kls = [], [], []
    for b in range(len(mask)):
        row = []
        for t in range(len(mask[b])):
            if not mask[b][t]:
                continue
            rho = math.exp(logp[b][t] - old[b][t])
            term = -min(rho * adv[b], min(max(rho, 1 - clip), 1 + hi) * adv[b])
            if ref is not None:
                log_r = ref[b][t] - logp[b][t]
                k3 = math.exp(log_r) - 1 - log_r
                kls.append(k3)
                term += kl_coef * k3
            row.append(term)
        per_seq.append(sum(row) / len(row))
        flat += row
    loss = sum(per_seq) / len(per_seq) if level == "seq" else sum(flat) / len(flat)
    return loss, (sum(kls) / len(kls) if kls else 0.0)


def test_grpo_loss_kl_term_clip_high_and_token_advantages():
    torch.manual_seed(0)
    logp, old, ref = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    # ragged lengths, so "seq" (mean per response, then over responses) and "token" give different losses
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    adv = torch.randn(3)
    lists = (logp.tolist(), old.tolist(), adv.tolist(), mask.tolist())
    for level in ("seq", "token"):
        for clip_high in (None, 0.28):
            base = L.grpo_loss(logp, old, adv, mask, clip_high=clip_high, level=level)[0]
            want, _ = _grpo_loop(*lists, clip_high=clip_high, level=level)
            assert base.item() == pytest.approx(want, abs=1e-5), (level, clip_high)
            with_kl, _, kl = L.grpo_loss(logp, old, adv, mask, clip_high=clip_high, ref_logp=ref, kl_coef=0.1,
                                         level=level)
            want, want_kl = _grpo_loop(*lists, clip_high=clip_high, ref=ref.tolist(), kl_coef=0.1, level=level)
            assert with_kl.item() == pytest.approx(want, abs=1e-5), (level, clip_high)
            assert kl.item() == pytest.approx(want_kl, abs=1e-5)
    assert _grpo_loop(*lists, level="seq")[0] != pytest.approx(_grpo_loop(*lists, level="token")[0], abs=1e-3)
    # [B] advantages broadcast like the same [B, T] ones
    base = L.grpo_loss(logp, old, adv, mask)[0]
    same = L.grpo_loss(logp, old, adv[:, None].expand(3, 4), mask)[0]
    assert same.item() == pytest.approx(base.item())
    # clip-higher: ratio 1.25 with A > 0 is clipped at 1.2 but not at 1.28
    lp, o, a, m = torch.tensor([[math.log(1.25)]]), torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1)
    assert L.grpo_loss(lp, o, a, m, clip=0.2)[0].item() == pytest.approx(-1.2)
    assert L.grpo_loss(lp, o, a, m, clip=0.2, clip_high=0.28)[0].item() == pytest.approx(-1.25)


def test_losses_import_only_torch():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(L))
    roots = {
        (n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in (n.names if isinstance(n, ast.Import) else [n])
    }
    assert roots <= {"__future__", "torch"}, roots



def test_plackett_luce_tiers_matches_plackett_luce_and_breslow_ties_by_hand():
    s = torch.tensor([0.3, -1.0, 2.0, 0.5])
    order = [2, 0, 3, 1]
    ours = L.plackett_luce_tiers(s, [[i] for i in order])
    assert ours.item() == pytest.approx(L.plackett_luce(s, order).item() / 3, rel=1e-6)
    # Breslow ties: pick 0 from {0,1,2}, then the tie {1,2} from {1,2} with the (e^0 + e^0)^2 denominator;
    # 2 choice steps (K - 1).
    t = [[0], [1, 2]]
    by_hand = ((math.log(math.exp(3) + 2) - 3) + 2 * math.log(2)) / 2
    assert L.plackett_luce_tiers(torch.tensor([3.0, 0.0, 0.0]), t).item() == pytest.approx(by_hand, rel=1e-6)
    # a tie of the last two is minimised by equal scores
    equal, apart = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([3.0, 1.0, -1.0])
    assert L.plackett_luce_tiers(equal, t) < L.plackett_luce_tiers(apart, t)


def test_ranking_loss_margin_by_hand():
    """-log σ(r_w - r_l - m) per pair, averaged per prompt: two prompts, one pair each."""
    scores = torch.tensor([1.0, 0.0, 2.0, 1.5])
    pairs, group = torch.tensor([[0, 1], [2, 3]]), torch.tensor([0, 1])
    nll = lambda d: math.log(1 + math.exp(-d))  # noqa: E731
    want = (nll(1.0 - 0.5) + nll(0.5 - 2.0)) / 2
    got = L.ranking_loss(scores, pairs, group, margin=torch.tensor([0.5, 2.0]))
    assert got.item() == pytest.approx(want, rel=1e-6)
