"""Input-gradient probes and the end-of-training query signals, against plain-torch
recomputations (cld_hf.recording.probes, cld_hf.recording.signals)."""

import numpy as np
import torch

from helpers import MLP, make_recorder, recompute_signals, train_epoch


def reference_curvature(model, x, y, *, batch_size, num_probes=10, h=1e-3, seed=0):
    """The curvature signal written out: batch by batch in row order, R Rademacher probes each
    from one generator, the norm of the input-gradient difference of the summed CE."""
    gen = torch.Generator().manual_seed(seed)
    model.eval()

    def grad(inp, labels):
        inp = inp.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(pixel_values=inp)["logits"], labels,
                                                 reduction="sum")
        return torch.autograd.grad(loss, inp)[0]

    out = []
    for s in range(0, len(y), batch_size):
        xb, yb = x[s:s + batch_size], y[s:s + batch_size]
        base = grad(xb, yb)
        cols = []
        for _ in range(num_probes):
            v = torch.randint(0, 2, xb.shape, generator=gen).float() * 2 - 1
            cols.append((grad(xb + h * v, yb) - base).flatten(1).norm(dim=1))
        out.append(torch.stack(cols, dim=1))
    return torch.cat(out).numpy()


def reference_boundary_steps(model, x, y, *, alpha=1e-4, k_max=50):
    model.eval()
    steps = []
    for i in range(len(y)):  # one sample at a time: the per-sample definition
        xi, yi = x[i:i + 1].clone(), y[i:i + 1]
        with torch.no_grad():
            if model(pixel_values=xi)["logits"].argmax(1).item() != yi.item():
                steps.append(0)
                continue
        count = k_max
        for k in range(1, k_max + 1):
            xi.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(pixel_values=xi)["logits"], yi)
            (g,) = torch.autograd.grad(loss, xi)
            xi = (xi + alpha * g.sign()).detach()
            with torch.no_grad():
                if model(pixel_values=xi)["logits"].argmax(1).item() != yi.item():
                    count = k
                    break
        steps.append(count)
    return np.array(steps)


def test_final_probes_and_query_features_equal_plain_torch(accelerator, data, tmp_path):
    train, query = data
    model = MLP(seed=1)
    signals = ["embeddings", "query_embeddings", "query_probs", "curvature", "boundary_steps"]
    rec = make_recorder(accelerator, data, tmp_path, signals=signals)
    rec.record(model, epoch=0)
    train_epoch(model, train, seed=1)
    params = [p.detach().clone() for p in model.parameters()]
    rng_before = torch.get_rng_state()
    rec.record(model, epoch=1, final=True)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the probes leave the RNG alone
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))  # nor the weights
    store = rec.store
    assert sorted(store.array_names) == sorted(signals)
    assert all(store.array_snapshot(n) == 2 for n in signals) and rec.final_features_recorded
    q = recompute_signals(model, query)
    np.testing.assert_allclose(store.load_array("query_probs"), q["probs"], atol=1e-5)
    np.testing.assert_allclose(store.load_array("query_embeddings"), q["embeddings"], atol=1e-5)
    x = torch.tensor(np.asarray(train.with_format("numpy")["pixel_values"][:]))
    y = torch.tensor(np.asarray(train.with_format("numpy")["label"][:]))
    np.testing.assert_allclose(store.load_array("curvature"),
                               reference_curvature(model, x, y, batch_size=16), rtol=1e-4,
                               atol=1e-6)
    steps = store.load_array("boundary_steps")
    assert steps.dtype == np.int64
    np.testing.assert_array_equal(steps, reference_boundary_steps(model, x, y))
    assert (steps == 0).sum() > 0 and (steps > 0).sum() > 0  # both kinds of samples occur
