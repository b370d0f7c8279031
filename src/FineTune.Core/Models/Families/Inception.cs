using FineTune.Core.Export;
using FineTune.Core.Weights;
using static TorchSharp.torch;
using static TorchSharp.torchvision.models;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's Inception v3 (<c>models/inception.py</c>), built by TorchSharp's TorchVision with its auxiliary head,
/// which published state dicts keep: stages by top-level module for <c>last:N</c>.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp inception_v3</c>.</remarks>
internal static class InceptionFamily
{
    public static ModelArchitecture Architecture { get; } = new("Inception",
    [
        new("inception_v3", () => inception_v3(), "fc", Preprocessing.ImageNet(resizeSize: 342, cropSize: 299))
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", Preprocessing.ImageNet(342, 299), 1000, 27161264),
            ],
            DefaultWeights = "IMAGENET1K_V1",
            AuxiliaryHeadPaths = ["AuxLogits.fc"],
            Constructor = classes => $"torchvision.models.inception_v3(num_classes={classes}, aux_logits=True, transform_input=False, init_weights=False)",
        },
    ])
    {
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            ["InceptionV3"] = (w, m, path, x) => w.Child(m, path, "fc", w.Flatten(path, w.Children(m, path, GoogLeNetFamily.WithoutTransformInput(m, x),
                "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
                "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
                "avgpool", "dropout"))),
            ["InceptionA"] = (w, m, path, x) => w.Concat(path, [
                w.Child(m, path, "branch1x1", x),
                w.Children(m, path, x, "branch5x5_1", "branch5x5_2"),
                w.Children(m, path, x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                w.Child(m, path, "branch_pool", PoolBranch(w, path, x))]),
            ["InceptionB"] = (w, m, path, x) => w.Concat(path, [
                w.Child(m, path, "branch3x3", x),
                w.Children(m, path, x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                w.MaxPool(path, x, [3, 3], [2, 2], [0, 0], false, [1, 1], null)]),
            ["InceptionC"] = (w, m, path, x) => w.Concat(path, [
                w.Child(m, path, "branch1x1", x),
                w.Children(m, path, x, "branch7x7_1", "branch7x7_2", "branch7x7_3"),
                w.Children(m, path, x, "branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"),
                w.Child(m, path, "branch_pool", PoolBranch(w, path, x))]),
            ["InceptionD"] = (w, m, path, x) => w.Concat(path, [
                w.Children(m, path, x, "branch3x3_1", "branch3x3_2"),
                w.Children(m, path, x, "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"),
                w.MaxPool(path, x, [3, 3], [2, 2], [0, 0], false, [1, 1], null)]),
            ["InceptionE"] = InceptionE,
        },
    };

    private static OnnxValue InceptionE(OnnxModuleWriter w, nn.Module m, string path, OnnxValue x)
    {
        var branch3x3 = w.Child(m, path, "branch3x3_1", x);
        var branch3x3dbl = w.Children(m, path, x, "branch3x3dbl_1", "branch3x3dbl_2");
        return w.Concat(path, [
            w.Child(m, path, "branch1x1", x),
            w.Concat(path, [w.Child(m, path, "branch3x3_2a", branch3x3), w.Child(m, path, "branch3x3_2b", branch3x3)]),
            w.Concat(path, [w.Child(m, path, "branch3x3dbl_3a", branch3x3dbl), w.Child(m, path, "branch3x3dbl_3b", branch3x3dbl)]),
            w.Child(m, path, "branch_pool", PoolBranch(w, path, x))]);
    }

    /// <summary>Inception's pooling branch: avg_pool2d(3, stride 1, padding 1), zero padding counted.</summary>
    private static OnnxValue PoolBranch(OnnxModuleWriter w, string path, OnnxValue x) => w.AvgPool(path, x, [3, 3], [1, 1], [1, 1], false, true, null);
}
