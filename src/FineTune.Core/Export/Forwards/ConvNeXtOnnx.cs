using FineTune.Core.Models;

namespace FineTune.Core.Export.Forwards;

/// <summary>ConvNeXt's ONNX forwards (layer norms, no batch norm: nothing to fuse).</summary>
internal static class ConvNeXtOnnx
{
    internal static IReadOnlyDictionary<string, OnnxForward> Forwards { get; } = new Dictionary<string, OnnxForward>
    {
        [nameof(ConvNeXt)] = (w, m, path, x) => w.Children(m, path, x, "features", "avgpool", "classifier"),
        // x + layer_scale·block(x); stochastic depth is the identity in inference.
        ["CNBlock"] = (w, m, path, x) =>
        {
            var branch = w.Child(m, path, "block", x);
            var scale = OnnxModuleWriter.Parameter(m, "layer_scale");
            return w.Add(path, w.Graph.Node("Mul", path, [branch.Name, w.Graph.Initializer(path + ".layer_scale", scale)], branch.Trace * scale), x);
        },
    };
}
