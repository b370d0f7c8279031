# Per family: torchvision's parameter count and the activation elements one image produces in a training forward
# (every leaf module's output, at the family's input size): what the memory estimate scales by the batch size.
# Usage: /usr/bin/python3 bench/memory_table.py resnet18 resnet50 ... prints the rows of PeakMemory's table (FineTune.Core/Engine/MemoryEstimate.cs).
import sys, torch, torchvision.models as m
torch.set_grad_enabled(False)
families = sys.argv[1:]
for name in families:
    size = 299 if name == "inception_v3" else 224
    kw = {"aux_logits": False, "init_weights": False} if name in ("inception_v3", "googlenet") else {}
    model = getattr(m, name)(**kw).eval()
    params = sum(p.numel() for p in model.parameters())
    total = [0]
    def hook(mod, inp, out):
        if isinstance(out, torch.Tensor): total[0] += out.numel()
    for mod in model.modules():
        if len(list(mod.children())) == 0: mod.register_forward_hook(hook)
    model(torch.zeros(1, 3, size, size))
    print(f'["{name}"] = ({params}, {total[0]}),', flush=True)
