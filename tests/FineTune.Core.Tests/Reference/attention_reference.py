"""PyTorch reference for the attention families (ViT, Swin v1/v2, MaxViT) of torchvision 0.14.

export BUILDER OUT SIZE [IMAGE_SIZE]
        build torchvision's BUILDER (1000 classes; a ViT for IMAGE_SIZE pixels when given) with seed 0 and every
        parameter moved off its initial value, write OUT/model.pth (its state dict) and OUT/io.pth
        ({"input": 2 random SIZE×SIZE images, "logits"}) in eval mode, print the largest |logit|
check BUILDER STATE IO [IMAGE_SIZE]
        load STATE (a state dict written by C#) into torchvision's BUILDER with strict=True and print the max abs
        difference of its logits on IO's input from IO's logits
"""
import math
import sys

import torch
import torchvision

torch.set_num_threads(2)


def build(builder, image_size=None):
    kwargs = {} if image_size is None else {"image_size": image_size}
    return getattr(torchvision.models, builder)(**kwargs)


def randomised(builder, image_size):
    """Initial values hide mistakes (zero heads, class tokens and key biases, unit norms): draw them all afresh."""
    torch.manual_seed(0)
    model = build(builder, image_size)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.2, 0.6)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(7)
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
        for name, parameter in model.named_parameters():
            if name.endswith("logit_scale"):
                # Swin v2 clamps the scale at 100: one head per stage beyond it. More would be ill-conditioned: PyTorch's
                # own float32 logits would then differ from its float64 ones by more than the tolerance.
                parameter.uniform_(math.log(5), math.log(20))
                if ".0.attn." in name:
                    parameter[0].fill_(math.log(150))
            elif "norm" not in name and ".ln" not in name and not name.startswith("ln"):
                parameter.add_(torch.randn_like(parameter) * 0.02)
    return model.eval()


def export(builder, out, size, image_size):
    model = randomised(builder, image_size)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(x)
    print(float(logits.abs().max()))
    torch.save(model.state_dict(), f"{out}/model.pth")
    torch.save({"input": x, "logits": logits}, f"{out}/io.pth")


def check(builder, state_path, io_path, image_size):
    model = build(builder, image_size)
    model.load_state_dict(torch.load(state_path), strict=True)
    model.eval()
    io = torch.load(io_path)
    with torch.no_grad():
        logits = model(io["input"])
    print(float((logits - io["logits"]).abs().max()))


if __name__ == "__main__":
    image_size = int(sys.argv[-1]) if (sys.argv[1] == "export" and len(sys.argv) == 6) or (sys.argv[1] == "check" and len(sys.argv) == 6) else None
    if sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3], int(sys.argv[4]), image_size)
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4], image_size)
