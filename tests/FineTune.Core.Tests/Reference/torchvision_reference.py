"""The PyTorch reference the C# side is checked against (Debian python3-torch 1.13, python3-torchvision 0.14).

export FAMILY OUT SIZE   build torchvision's FAMILY with seed 0 and randomised BatchNorm state, then write
                         OUT/model.pth (its state dict) and OUT/io.pth ({"input", "logits"}) in eval mode
check FAMILY CLASSES STATE IO
                         load STATE (a state dict written by C#) into torchvision's FAMILY with CLASSES
                         outputs, and print the max abs difference of its logits on IO's input from IO's logits
train FAMILY STATE DATA OUT
                         the seed recipe in PyTorch: STATE into torchvision's FAMILY (head sized to it), everything
                         frozen but the head (BatchNorm in eval mode), SGD on the head with DATA's lr and
                         momentum over DATA's batches of DATA's images; OUT gets {"losses", "head_weight"}
shapes EXPRESSION        the model a Python expression builds (torchvision imported): "key d0,d1,..." per state-dict entry
"""
import collections
import sys

import torch
import torchvision

torch.set_num_threads(2)


def build(family, num_classes=1000, size=224):
    """torchvision's FAMILY; a ViT for SIZE-pixel images (its position embedding has one entry per patch), as torchvision
    builds it for weights of that size."""
    models = torchvision.models
    if family.startswith("vit_"):
        return getattr(models, family)(num_classes=num_classes, image_size=size)
    if family == "googlenet":
        return models.googlenet(num_classes=num_classes, aux_logits=True, transform_input=False, init_weights=True)
    if family == "inception_v3":
        return models.inception_v3(num_classes=num_classes, aux_logits=True, transform_input=False, init_weights=True)
    return getattr(models, family)(num_classes=num_classes)


def load(model, state, strict=True):
    """model.load_state_dict(state), stating the version torchvision's MNASNet requires of a state dict where it has
    none (one written by C#, a safetensors file): every MNASNet we build is version 2, whose stem scales with the width."""
    if isinstance(model, torchvision.models.mnasnet.MNASNet) and getattr(state, "_metadata", None) is None:
        state = collections.OrderedDict(state)
        state._metadata = {"": {"version": 2}}
    model.load_state_dict(state, strict=strict)


def seeded(family, size=224):
    """torchvision's FAMILY (1000 classes, for SIZE-pixel images) with seed 0 and randomised BatchNorm state, in eval mode."""
    torch.manual_seed(0)
    model = build(family, size=size)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                # Weights below 1 keep activations of the deep families (resnet152, inception) near unit
                # scale, so an absolute tolerance on the logits means the same for every family.
                m.weight.uniform_(0.2, 0.6)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, torch.nn.LayerNorm):
                # Drawn away from 1 and 0 (and ConvNeXt's layer scale away from 1e-6), so a misplaced one shows.
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        for name, p in model.named_parameters():
            if name.endswith("layer_scale"):
                p.uniform_(0.2, 0.6)
    return model.eval()


def export(family, out, size):
    model = seeded(family, size)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(x)
    print(float(logits.abs().max()))
    torch.save(model.state_dict(), f"{out}/model.pth")
    torch.save({"input": x, "logits": logits}, f"{out}/io.pth")


def check(family, num_classes, state_path, io_path):
    state = torch.load(state_path)
    io = torch.load(io_path)
    model = build(family, num_classes, size=io["input"].shape[-1])
    load(model, state, strict=family != "googlenet")
    model.eval()
    with torch.no_grad():
        logits = model(io["input"])
    print(float((logits - io["logits"]).abs().max()))


def train(family, state_path, data_path, out_path):
    state = torch.load(state_path)
    data = torch.load(data_path)
    model = build(family, num_classes=int(data["num_classes"]))
    load(model, state)
    head = model.fc
    for p in model.parameters():
        p.requires_grad = False
    for p in head.parameters():
        p.requires_grad = True
    model.eval()
    head.train()
    optimizer = torch.optim.SGD(head.parameters(), lr=float(data["lr"]), momentum=float(data["momentum"]))
    losses = []
    for batch in data["batches"]:
        loss = torch.nn.functional.cross_entropy(model(data["images"][batch]), data["labels"][batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    torch.save({"losses": torch.tensor(losses, dtype=torch.float64), "head_weight": head.weight.detach()}, out_path)


def shapes(expression):
    for key, value in eval(expression, {"torchvision": torchvision}).state_dict().items():
        print(key, ",".join(str(d) for d in value.shape))


if __name__ == "__main__":
    if sys.argv[1] == "shapes":
        shapes(sys.argv[2])
    elif sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "train":
        train(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        check(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
