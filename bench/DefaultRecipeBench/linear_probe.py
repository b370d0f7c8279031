"""The head's convex optimum on a run's cached features, found by PyTorch: an independent check of the defaults' convex head.

The new head is a linear layer on frozen features, so its training objective (cross-entropy plus weight decay/2 * |W|^2)
is convex, with one optimum per weight decay. PyTorch's L-BFGS (strong-Wolfe line search) finds it for each weight decay
of the defaults' grid, full batch; the one with the lowest validation loss (the defaults' stopping metric) is scored on
the test split. Rows are labelled from
the dataset's class folders (ordinal order, as the scan reads them); the run's own published head, scored on the same
rows, must give the run's reported test accuracy, or the labels are not the rows' and the script fails.

usage: linear_probe.py DATASET RUN   (RUN: the run's folder, artifacts/runs/ID; prints one JSON object)
"""
import glob
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

WEIGHT_DECAYS = [1.0, 0.1, 0.01, 0.001, 0.0001]  # HeadSolver.WeightDecays
DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def safetensors(path):
    raw = open(path, "rb").read()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + size])
    body = raw[8 + size:]
    return {name: torch.from_numpy(np.frombuffer(body[t["data_offsets"][0]:t["data_offsets"][1]], dtype=DTYPES[t["dtype"]])
                                   .reshape(t["shape"]).copy())
            for name, t in header.items() if name != "__metadata__"}


def split(dataset, run, name, folder):
    shards = sorted(glob.glob(os.path.join(run, "features", f"{name}-*.safetensors")))
    features = torch.cat([safetensors(shard)["features"] for shard in shards]).flatten(1)
    classes = sorted(os.listdir(os.path.join(dataset, "train")), key=lambda c: c.encode())
    labels = torch.tensor([i for i, c in enumerate(classes) for _ in os.listdir(os.path.join(dataset, folder, c))])
    if len(labels) != len(features):
        sys.exit(f"{name}: {len(features)} feature rows for {len(labels)} files (a file skipped?)")
    return features, labels


def solve(x, y, classes, weight_decay):
    weight = torch.zeros(classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=1000, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + weight_decay / 2 * (weight * weight).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def score(weight, bias, x, y):
    logits = x @ weight.T + bias
    return (logits.argmax(1) == y).double().mean().item(), F.cross_entropy(logits, y).item()


def main():
    dataset, run = sys.argv[1], sys.argv[2]
    train, val, test = (split(dataset, run, *names) for names in [("train", "train"), ("validation", "val"), ("test", "test")])
    classes = int(train[1].max()) + 1
    published = safetensors(os.path.join(run, "published", "model.safetensors"))
    head = [name for name in published if published[name].shape == (classes, train[0].shape[1])]
    reported = json.load(open(os.path.join(run, "reports", "evaluation.json")))["top1Accuracy"]
    if len(head) != 1 or abs(score(published[head[0]], published[head[0][:-len("weight")] + "bias"], *test)[0] - reported) > 1e-6:
        sys.exit("the run's published head does not give its reported test accuracy on these rows: labels misaligned")
    trials = []
    for weight_decay in WEIGHT_DECAYS:
        weight, bias = solve(*train, classes, weight_decay)
        val_accuracy, val_loss = score(weight, bias, *val)
        trials.append({"weight_decay": weight_decay, "val_accuracy": val_accuracy, "val_loss": val_loss,
                       "test_accuracy": score(weight, bias, *test)[0]})
    best = min(trials, key=lambda t: t["val_loss"])
    print(json.dumps({"test_accuracy": best["test_accuracy"], "weight_decay": best["weight_decay"], "trials": trials}))


main()
