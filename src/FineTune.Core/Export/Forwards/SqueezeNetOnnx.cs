using FineTune.Core.Models;

namespace FineTune.Core.Export.Forwards;

/// <summary>SqueezeNet's ONNX forwards (no batch norm, so no fusion pairs).</summary>
internal static class SqueezeNetOnnx
{
    internal static IReadOnlyDictionary<string, OnnxForward> Forwards { get; } = new Dictionary<string, OnnxForward>
    {
        [nameof(SqueezeNet)] = (w, m, path, x) => w.Flatten(path, w.Children(m, path, x, "features", "classifier")),
        ["Fire"] = (w, m, path, x) =>
        {
            var squeezed = w.Children(m, path, x, "squeeze", "squeeze_activation");
            return w.Concat(path, [w.Children(m, path, squeezed, "expand1x1", "expand1x1_activation"),
                w.Children(m, path, squeezed, "expand3x3", "expand3x3_activation")], 1);
        },
    };
}
