"""The convex optimum of a linear head, as PyTorch finds it: L-BFGS with a strong-Wolfe line search in float64 on
cross-entropy (class weights, label smoothing, mean over rows) plus weight_decay/2 * |W|^2, the bias not decayed.

usage: head_solver_reference.py IN.json   (features, labels, classes, labelSmoothing, classWeighted, weightDecay)
prints {"weight": [[...]], "bias": [...], "loss": L}
"""
import json
import sys

import torch
import torch.nn.functional as F

spec = json.load(open(sys.argv[1]))
x = torch.tensor(spec["features"], dtype=torch.float64)
y = torch.tensor(spec["labels"])
classes = spec["classes"]
class_weights = None
if spec["classWeighted"]:
    counts = torch.bincount(y, minlength=classes).double()
    class_weights = torch.where(counts > 0, len(y) / (classes * counts), torch.zeros_like(counts))
weight = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)
bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=5000, max_eval=10000, history_size=50,
                              line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-16)


def objective():
    return (F.cross_entropy(x @ weight.T + bias, y, weight=class_weights, label_smoothing=spec["labelSmoothing"])
            + spec["weightDecay"] / 2 * (weight * weight).sum())


def closure():
    optimizer.zero_grad()
    loss = objective()
    loss.backward()
    return loss


optimizer.step(closure)
print(json.dumps({"weight": weight.tolist(), "bias": bias.tolist(), "loss": objective().item()}))
