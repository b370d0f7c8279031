"""The blog's recipe (PyTorch transfer-learning tutorial, "ConvNet as fixed feature extractor": SGD lr 0.001,
momentum 0.9, StepLR(7, 0.1), batch 4, the best validation epoch's weights kept) for EPOCHS epochs on a
train/ val/ test/ ImageFolder, from the ImageNet weights we ship (resnet18-cntk-rgb, exported by the bench).
The frozen backbone runs in eval mode, so its output is the same every epoch: it is computed once per image and
the loop trains fc on it (the same arithmetic as running the backbone each epoch, in a fraction of the time).
Prints one JSON object: the kept epoch's val and test accuracy.

usage: blog_loop.py FOLDER WEIGHTS.pth [EPOCHS=10]
"""
import copy
import json
import os
import sys
import warnings

import torch
import torchvision
from torchvision import datasets, transforms

warnings.filterwarnings("ignore", category=UserWarning)  # palette PNGs with transparency, converted to RGB
folder, weights = sys.argv[1], sys.argv[2]
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
torch.set_num_threads(os.cpu_count())

transform = transforms.Compose([
    transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
model = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [2, 2, 2, 3])
missing, unexpected = model.load_state_dict(torch.load(weights), strict=False)
assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected, (missing, unexpected)
model.fc = torch.nn.Identity()
model.eval()


def features(split):
    images = datasets.ImageFolder(os.path.join(folder, split), transform)
    loader = torch.utils.data.DataLoader(images, batch_size=32)
    with torch.no_grad():
        pairs = [(model(x), y) for x, y in loader]
    return images.classes, torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


classes, train_x, train_y = features("train")
_, val_x, val_y = features("val")
_, test_x, test_y = features("test")
torch.manual_seed(0)
fc = torch.nn.Linear(train_x.shape[1], len(classes))
criterion = torch.nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(fc.parameters(), lr=0.001, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train_x, train_y), batch_size=4, shuffle=True)


def accuracy(x, y):
    with torch.no_grad():
        return (fc(x).argmax(1) == y).float().mean().item()


best, best_state = -1.0, None
for epoch in range(epochs):
    for inputs, labels in loader:
        optimizer.zero_grad()
        criterion(fc(inputs), labels).backward()
        optimizer.step()
    scheduler.step()
    val = accuracy(val_x, val_y)
    if val > best:
        best, best_state = val, copy.deepcopy(fc.state_dict())
fc.load_state_dict(best_state)
print(json.dumps({"train": len(train_y), "val": len(val_y), "test": len(test_y), "val_accuracy": best,
                  "test_accuracy": accuracy(test_x, test_y)}))
