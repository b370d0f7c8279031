using System.Reflection;
using FineTune.Core.Export;
using FineTune.Core.Weights;
using static TorchSharp.torch;
using static TorchSharp.torchvision.models;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's GoogLeNet (<c>models/googlenet.py</c>), built by TorchSharp's TorchVision without its auxiliary heads
/// (published state dicts have none either): stages by top-level module for <c>last:N</c>.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp googlenet</c>.</remarks>
internal static class GoogLeNetFamily
{
    public static ModelArchitecture Architecture { get; } = new("GoogLeNet",
    [
        new("googlenet", () => googlenet(), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/googlenet-1378be20.pth", Preprocessing.ImageNet(256, 224), 1000, 6624904),
            ],
            DefaultWeights = "IMAGENET1K_V1",
            IgnoredPrefixes = ["aux1.", "aux2."],
            Constructor = classes => $"torchvision.models.googlenet(num_classes={classes}, aux_logits=False, transform_input=False, init_weights=False)",
        },
    ])
    {
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            ["GoogleNet"] = (w, m, path, x) => w.Children(m, path, w.Flatten(path, w.Children(m, path, WithoutTransformInput(m, x),
                    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4", "inception5a", "inception5b", "avgpool")),
                "dropout", "fc"),
            ["Inception"] = (w, m, path, x) => w.Concat(path, [w.Child(m, path, "branch1", x), w.Child(m, path, "branch2", x), w.Child(m, path, "branch3", x), w.Child(m, path, "branch4", x)]),
        },
    };

    /// <summary>torchvision's transform_input re-normalises ImageNet input; googlenet and inception_v3 are built without it.</summary>
    internal static OnnxValue WithoutTransformInput(nn.Module model, OnnxValue x)
    {
        var field = model.GetType().GetField("transform_input", BindingFlags.NonPublic | BindingFlags.Instance);
        if (field?.GetValue(model) is true)
            throw new NotSupportedException($"ONNX export does not write {model.GetType().Name} with transform_input");
        return x;
    }
}
