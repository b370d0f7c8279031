using FineTune.Core.Models;

namespace FineTune.Core.Export.Forwards;

/// <summary>
/// ShuffleNetV2's ONNX forwards; its batch norms all follow a convolution inside a Sequential, so fusion needs no pairs.
/// Its block's type name, InvertedResidual, is also MobileNet's and MNASNet's: the registry must key this one apart.
/// </summary>
internal static class ShuffleNetV2Onnx
{
    internal static IReadOnlyDictionary<string, OnnxForward> Forwards { get; } = new Dictionary<string, OnnxForward>
    {
        [nameof(ShuffleNetV2)] = (w, m, path, x) =>
            w.Child(m, path, "fc", w.ReduceMean(path, w.Children(m, path, x, "conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"), 2, 3)),
        ["InvertedResidual"] = (w, m, path, x) =>
        {
            long channels = x.Trace.shape[1];
            var joined = m.named_children().Any(c => c.name == "branch1")
                ? w.Concat(path, [w.Child(m, path, "branch1", x), w.Child(m, path, "branch2", x)], 1)
                : w.Concat(path, [w.Slice(path, x, 1, 0, channels / 2), w.Child(m, path, "branch2", w.Slice(path, x, 1, channels / 2, channels))], 1);
            return ChannelShuffle(w, path, joined);
        },
    };

    /// <summary>[n, 2, c/2, h, w] transposed to [n, c/2, 2, h, w]: the two branches' channels interleaved.</summary>
    private static OnnxValue ChannelShuffle(OnnxModuleWriter w, string path, OnnxValue x)
    {
        long channels = x.Trace.shape[1], height = x.Trace.shape[2], width = x.Trace.shape[3];
        var grouped = w.Reshape(path, x, 1, 2, channels / 2, height, width);
        return w.Reshape(path, w.Transpose(path, grouped, 0, 2, 1, 3, 4), 1, channels, height, width);
    }
}
