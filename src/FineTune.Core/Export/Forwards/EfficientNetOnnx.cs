using FineTune.Core.Models;

namespace FineTune.Core.Export.Forwards;

/// <summary>EfficientNet's (v1, v2) ONNX forwards; its batch norms are all in Conv2dNormActivation Sequentials.</summary>
internal static class EfficientNetOnnx
{
    internal static IReadOnlyDictionary<string, OnnxForward> Forwards { get; } = new Dictionary<string, OnnxForward>
    {
        [nameof(EfficientNet)] = (w, m, path, x) => w.Child(m, path, "classifier", w.Flatten(path, w.Children(m, path, x, "features", "avgpool"))),
        ["MBConv"] = Residual,
        ["FusedMBConv"] = Residual,
    };

    /// <summary>The block adds its input (stochastic depth is the identity in inference) exactly when the shape stays.</summary>
    private static OnnxValue Residual(OnnxModuleWriter w, TorchSharp.torch.nn.Module m, string path, OnnxValue x)
    {
        var output = w.Child(m, path, "block", x);
        return output.Trace.shape.SequenceEqual(x.Trace.shape) ? w.Add(path, output, x) : output;
    }
}
