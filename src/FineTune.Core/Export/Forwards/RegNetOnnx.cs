using FineTune.Core.Models;

namespace FineTune.Core.Export.Forwards;

/// <summary>RegNet's ONNX forwards; its batch norms are all in Conv2dNormActivation Sequentials.</summary>
internal static class RegNetOnnx
{
    internal static IReadOnlyDictionary<string, OnnxForward> Forwards { get; } = new Dictionary<string, OnnxForward>
    {
        [nameof(RegNet)] = (w, m, path, x) => w.Child(m, path, "fc", w.Flatten(path, w.Children(m, path, x, "stem", "trunk_output", "avgpool"))),
        ["ResBottleneckBlock"] = (w, m, path, x) =>
        {
            var shortcut = m.named_children().Any(c => c.name == "proj") ? w.Child(m, path, "proj", x) : x;
            return w.Relu(path, w.Add(path, w.Child(m, path, "f", x), shortcut));
        },
    };
}
