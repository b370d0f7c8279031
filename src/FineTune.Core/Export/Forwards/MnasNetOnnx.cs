using FineTune.Core.Models;

namespace FineTune.Core.Export.Forwards;

/// <summary>
/// MNASNet's ONNX forwards. Its InvertedResidual (one Sequential, its input added when the shape stays) is written by
/// MobileNet's forward of that type name, which means the same; its batch norms are all in Sequentials.
/// </summary>
internal static class MnasNetOnnx
{
    internal static IReadOnlyDictionary<string, OnnxForward> Forwards { get; } = new Dictionary<string, OnnxForward>
    {
        [nameof(MnasNet)] = (w, m, path, x) => w.Child(m, path, "classifier", w.ReduceMean(path, w.Child(m, path, "layers", x), 2, 3)),
    };
}
