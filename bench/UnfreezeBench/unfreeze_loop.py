"""Fine-tuning past the head in PyTorch, as a user writes it: resnet18 (the CNTK layout and ImageNet weights we ship),
the last N stages and the head trainable (the frozen stages in eval mode, so their BatchNorm statistics stay, as ours
do), or every stage, SGD lr 0.001 momentum 0.9, with or without augmentation (RandomResizedCrop(224) and a horizontal
flip, torchvision's recipe). Prints one JSON object: per-epoch and last val accuracy, seconds.

usage: unfreeze_loop.py FOLDER WEIGHTS.pth EPOCHS BATCH STAGES AUGMENT
  (STAGES: 1 = layer4, 2 = layer3 and layer4, …, full = every stage; AUGMENT: 0 or 1)
"""
import json
import os
import sys
import time
import warnings

import torch
import torchvision
from torchvision import datasets, transforms

warnings.filterwarnings("ignore", category=UserWarning)
folder, weights, epochs, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
stages, augment = sys.argv[5], sys.argv[6] == "1"
torch.set_num_threads(os.cpu_count())

normalize = [transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
evaluation = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)] + normalize)
training = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()] + normalize) if augment else evaluation
images = {split: datasets.ImageFolder(os.path.join(folder, split), training if split == "train" else evaluation) for split in ("train", "val")}
loaders = {split: torch.utils.data.DataLoader(images[split], batch_size=batch, shuffle=(split == "train"), num_workers=0)
           for split in ("train", "val")}

model = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [2, 2, 2, 3])
missing, unexpected = model.load_state_dict(torch.load(weights), strict=False)
assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected, (missing, unexpected)
torch.manual_seed(0)
model.fc = torch.nn.Linear(512, len(images["train"].classes))
trainable = [model] if stages == "full" else [model.layer1, model.layer2, model.layer3, model.layer4][4 - int(stages):] + [model.fc]
for p in model.parameters():
    p.requires_grad = False
for module in trainable:
    for p in module.parameters():
        p.requires_grad = True
optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9)
criterion = torch.nn.CrossEntropyLoss()

start = time.perf_counter()
accuracies = []
for epoch in range(epochs):
    model.eval()
    for module in trainable:
        module.train()
    for inputs, labels in loaders["train"]:
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for inputs, labels in loaders["val"]:
            correct += (model(inputs).argmax(1) == labels).sum().item()
    accuracies.append(correct / len(images["val"]))
print(json.dumps({"train": len(images["train"]), "val": len(images["val"]), "last": accuracies[-1],
                  "epochs": accuracies, "seconds": time.perf_counter() - start}))
