"""torchvision 0.14's weights tags, each with its transforms and meta (the reference for ModelFamily.Weights).

  weights_table.py csharp NAME...   prints the C# `Weights`/`DefaultWeights` initialisers of each builder, to paste
                                    into its family file (Models/Families)
  weights_table.py rows NAME...     prints one line per tag, in the order WeightsTableTests compares:
                                    builder tag url hash crop resize interpolation mean std categories num_params
"""
import sys

from torchvision.models import get_model_weights

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def single(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def tags(name):
    enum = get_model_weights(name)
    for weights in enum:
        keywords = weights.transforms.keywords
        crop = single(keywords["crop_size"])
        resize = single(keywords.get("resize_size", 256))
        interpolation = keywords.get("interpolation")
        interpolation = "bilinear" if interpolation is None else interpolation.value
        mean = list(keywords.get("mean", IMAGENET_MEAN))
        std = list(keywords.get("std", IMAGENET_STD))
        yield weights, crop, resize, interpolation, mean, std
    return enum


def default(name):
    return get_model_weights(name).DEFAULT.name


def floats(values):
    return ", ".join(f"{v}f" for v in values)


def csharp(name):
    print("            Weights =")
    print("            [")
    for weights, crop, resize, interpolation, mean, std in tags(name):
        if mean == IMAGENET_MEAN and std == IMAGENET_STD:
            arguments = f"{resize}, {crop}" + ("" if interpolation == "bilinear" else f", Interpolation.{interpolation.capitalize()}")
            preprocessing = f"Preprocessing.ImageNet({arguments})"
        else:
            preprocessing = (f"new Preprocessing({resize}, {crop}, ChannelOrder.Rgb, 1f / 255f, [{floats(mean)}], [{floats(std)}])"
                             f" {{ Interpolation = Interpolation.{interpolation.capitalize()} }}")
        print(f'                new("{weights.name}", "{weights.url}", {preprocessing}, '
              f'{len(weights.meta["categories"] or [])}, {weights.meta["num_params"]}),')
    print("            ],")
    print(f'            DefaultWeights = "{default(name)}",')


def rows(name):
    for weights, crop, resize, interpolation, mean, std in tags(name):
        file = weights.url.rsplit("/", 1)[1]
        digest = file.rsplit("-", 1)[1].split(".")[0]
        print(name, weights.name, weights.url, digest, crop, resize, interpolation,
              ",".join(f"{v:.6g}" for v in mean), ",".join(f"{v:.6g}" for v in std),
              len(weights.meta["categories"] or []), weights.meta["num_params"],
              "default" if weights.name == default(name) else "-")


if __name__ == "__main__":
    mode, names = sys.argv[1], sys.argv[2:]
    for name in names:
        {"csharp": csharp, "rows": rows}[mode](name)
