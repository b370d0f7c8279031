"""PyTorch's side of FeaturePassBench (Debian python3-torch 1.13, python3-torchvision 0.14): for each request on stdin
(a JSON list of {"builder", "head", "input"}), torchvision's builder with its head replaced by an identity, in eval
mode without gradients, over the images in INPUT (a torch.save'd {"images"}) in batches of BATCH: a warm-up pass, then
the best of PASSES timed passes. Prints {builder: seconds for all the images} as JSON.

usage: torch_feature_pass.py BATCH PASSES < requests.json
"""
import json
import sys
import time

import torch
import torchvision

torch.set_num_threads(2)
batch_size, passes = int(sys.argv[1]), int(sys.argv[2])
seconds = {}
for request in json.load(sys.stdin):
    model = getattr(torchvision.models, request["builder"])().eval()
    *parents, last = request["head"].split(".")
    holder = model
    for name in parents:
        holder = getattr(holder, name)
    setattr(holder, last, torch.nn.Identity())
    batches = torch.load(request["input"])["images"].split(batch_size)
    best = float("inf")
    with torch.no_grad():
        for p in range(passes + 1):
            start = time.perf_counter()
            for batch in batches:
                model(batch)
            if p > 0:
                best = min(best, time.perf_counter() - start)
    seconds[request["builder"]] = best
    print(request["builder"], f"{best:.2f} s", file=sys.stderr, flush=True)
print(json.dumps(seconds))
