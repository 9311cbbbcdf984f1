"""Checks every baseline test repeats: loss falls over a few steps, beats Pop on planted data."""

from __future__ import annotations

import torch


def loss_trace(model, batches, steps=30, lr=0.01):
    """Losses of ``steps`` Adam steps of ``model.calculate_loss`` cycling over ``batches``."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        loss = model.calculate_loss(batch)
        if isinstance(loss, tuple):
            loss = sum(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def assert_loss_falls(losses, factor=0.9):
    head, tail = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert tail < factor * head, f"loss did not fall: first {losses[:3]}, last {losses[-3:]}"


def assert_beats_pop(model_result, pop_result, metric="ndcg@10", margin=1.1):
    ours, pop = model_result["test_result"][metric], pop_result["test_result"][metric]
    assert ours > margin * pop, f"{metric}: model {ours:.4f} vs Pop {pop:.4f} (needs > {margin}x)"
